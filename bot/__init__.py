"""SuaraWarga application: configuration, wiring, channels and the command line."""
