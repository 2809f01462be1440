"""The admin, by page: integrations, the activity log, webhook deliveries and the dashboard.

Django's admin autodiscovery imports this package; importing its modules registers the pages.
"""

from integrations.admin import activity, deliveries, integrations  # noqa: F401
