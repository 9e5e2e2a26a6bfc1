"""Offline entry points (the ``vcups`` command): thin command-line layers over ``vcups_core``."""
