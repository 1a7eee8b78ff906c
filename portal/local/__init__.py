"""Run the portal on this machine against moto, with a local sign-in that plays the ALB.

Not part of the deployed application: ``portal_app`` never imports this package, and the only way
to get a local sign-in is to pass a :class:`local.signin.LocalSignIn` object to ``create_app``.
Start it with ``cd portal && python -m local`` (``make portal``).
"""
