"""Negotiation: agreeing link settings and transfer protocols between two ends of a serial line."""
