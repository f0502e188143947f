from audit_agent.schemas import write_schemas

write_schemas()
