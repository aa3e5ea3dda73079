"""DRF plumbing shared by every app's API: errors, pagination, parsers, schema, throttles."""
