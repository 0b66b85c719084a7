"""The ``FolderChanges`` port (``pipeline.watch``): the OS's change notifications through
watchfiles (``notify``), and a timer-only fake that a test wakes by hand (``timer``).
"""
