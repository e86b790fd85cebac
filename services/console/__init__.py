"""The console: the platform's one address, people's sign-in and the screens they work in."""
