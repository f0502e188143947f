"""Stand-ins for the real thing: a Stratum pool server and a CPU-burning miner that speaks to it."""
