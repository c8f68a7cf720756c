"""The web application (``srdose serve``): Starlette under uvicorn, the package's Jinja templates.

Nothing imports it apart from the CLI's ``serve`` command. :func:`srdose.web.app.create_app` builds
the application; :mod:`srdose.web.auth` holds access control; SQL stays in ``srdose.store``.
"""
