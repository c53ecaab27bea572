"""Where and when jobs run: runners (local process, SSH device) and executors (warm local workers, Ray)."""
