"""Core: what every stage shares and nothing else owns.

- :mod:`.errors`: :class:`InputError`, the one exception for a user's mistake;
- :mod:`.atomic`: writing through a temporary file and a rename;
- :mod:`.yaml_io`: reading YAML strictly (safe types, no repeated keys, no alias bombs);
- :mod:`.schema`: the study schema (``config.schema.yaml``): defaults, bounds, one-line messages,
  and ``section_dataclass``, which makes every ``*Config`` from its section;
- :mod:`.config`: a whole study config: validation, variants, class lists, settings shared by
  several stages (the missing wedge);
- :mod:`.runlog`: run logs and ``provenance.json``;
- :mod:`.progress`: how far a long step is (training, encoding, matching), as lines in its log.
"""
