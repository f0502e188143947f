"""Rule packs: load + validate YAML, compile into matchers, run their examples."""
