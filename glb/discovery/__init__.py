"""Sources of endpoint addresses beyond the configuration file.

Each keeps part of a `glb.core.addresses.AddressBook` current and calls back with a new book
when what it knows changed; the composition root puts it in force (`Reloader.readdress`).
`hostnames`: the addresses of the host names in clusters' `addresses`, resolved over DNS.
"""
