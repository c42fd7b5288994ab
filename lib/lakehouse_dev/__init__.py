"""Development tools, never shipped to EMR: the landing-zone generator and the benchmark."""
