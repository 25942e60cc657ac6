"""The threaded layer: one thread per connection over the sans-I/O core.

:mod:`~rawws.sync.server` (``serve``), :mod:`~rawws.sync.client` (``connect``),
:mod:`~rawws.sync.connection` (``Connection``, the part both share), and the
shared machinery they stand on: :mod:`~rawws.sync.reactor` (one thread that
reads for idle connections), :mod:`~rawws.sync.timers` (one thread for every
deadline) and :mod:`~rawws.sync.threads` (connection threads and their
stacks). :mod:`~rawws.sync.eventclient` is a browser-style reconnecting client.
"""
