"""Training of the seed models: ``hand-pose train`` (``cli``), the loop (``loop``), batch
sources (``data``) and reports (``report``)."""
