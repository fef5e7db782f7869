"""The leave service: leave applications, their approval by the division head, entitlements."""
