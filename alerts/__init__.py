"""Alerts: model, lifecycle, rules, persistence, HTTP API and console."""
