"""What ao knows and keeps: session states and their transitions, the store (SQLite), events,
and the read models the faces show (views). Imports only the base."""
