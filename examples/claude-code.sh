#!/usr/bin/env bash
# Point Claude Code at abridge. Create a key first:
#   abridge keys create --name claude-code
export ANTHROPIC_BASE_URL="${ABRIDGE_URL:-http://127.0.0.1:8080}"
export ANTHROPIC_API_KEY="${ABRIDGE_KEY:?set ABRIDGE_KEY to a key from 'abridge keys create'}"
exec claude "$@"
