"""A small newsletter application that sends its terms-of-service notice with throttlemail.

Run its scripts with ``examples/`` as the working directory (``python -m
newsletter.populate``) or on ``PYTHONPATH``; the command line loads its campaign with
``throttlemail --app newsletter.app:campaign``.
"""
