"""The report's sections, the ablation records' schema, and the Jinja2 templates."""
