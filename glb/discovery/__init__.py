"""Sources of endpoint addresses beyond the configuration file."""
