"""audit-agent: find hidden cryptocurrency-mining workloads and write filing-style reports."""

__version__ = "0.1.0"
