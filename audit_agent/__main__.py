from audit_agent.cli import main

raise SystemExit(main())
