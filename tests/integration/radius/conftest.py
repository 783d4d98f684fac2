"""Session fixtures for the FreeRADIUS tests (helpers live in radius_support.py)."""

from radius_support import certs, radius_env, radius_tmp, slapd  # noqa: F401
