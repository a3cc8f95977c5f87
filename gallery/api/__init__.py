"""The JSON API: authentication, answer shapes and views."""
