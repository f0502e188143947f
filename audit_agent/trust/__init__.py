"""Reports a fleet can trust: each host signs its own report, the fleet verifies against registered keys.

* hostkey: the host's Ed25519 key (created once, root-only 0600 in the state directory) and machine id.
* signature: the canonical bytes of a report, signing them, and checking a signed report.
* registry: the fleet's keys file (machine id -> public key), one line per host.
"""
