"""The Locust glue: everything that runs inside a Locust process and knows Locust (the plugin, the
load state, the User classes, the web UI's tab, Locust's private objects)."""
