"""The selection service: posts, teams, successors, and the procedures into the pool and onto a post."""
