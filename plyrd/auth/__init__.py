"""Signing in: sessions, developer tokens, roles, and the OAuth/app-password flows behind them (no HTTP here)."""
