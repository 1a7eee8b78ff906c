"""The portal's work, separate from HTTP: each function takes the clients it acts with."""
