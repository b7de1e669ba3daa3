"""One HTML toolkit: every page (gate verdict, validation result, drift check, scoring report,
promotion ledger) is a Jinja2 template in ``templates/`` extending one layout with one
stylesheet. Renderers take plain result dicts, so pages can be rebuilt from stored JSON."""
