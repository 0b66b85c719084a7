"""The only code that imports vendor libraries: databases, object stores, inference runtimes."""
