"""The platform in containers: the Docker engine, the images and their stand-ins, and the end-to-end check.

`./dev containers` (`python -m deploy.containers check`) builds every image, brings the
compose stack up, loads the demo and tries it through the containers (deploy/containers/stack.py);
tests/integration/test_containers.py runs the same check as part of `./dev test`.
"""
