"""Words: the report's blocks and their Markdown/HTML, method names, the conventions,
what a sweep and a verdict say, and the bounds page. Pages take numbers and records and
return blocks.
"""
