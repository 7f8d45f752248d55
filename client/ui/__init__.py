"""The web page over a raremem server: ``raremem-admin ui`` (see app.py)."""
