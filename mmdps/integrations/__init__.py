"""mmdps selectors inside other people's trainers: TRL (``mmdps.integrations.trl``) and verl
(``mmdps.integrations.verl``).

Neither trl, verl nor torch is imported here or at the import of the submodules: the classes that need
them are built on first use. See ``docs/integrations.md``.
"""
