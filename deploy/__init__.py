"""Deployment: the local stack without Docker, container images, compose and Kubernetes."""
