"""Remote targets: SSH transport of jobs to devices, and Jetson specifics (tegrastats, nvpmodel)."""
