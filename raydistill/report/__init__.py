"""Report pieces: tables and images of a run, viewable without any server."""
