"""One date format everywhere in the admin, with seconds (issue 12: entries made in the same
minute could not be ordered, and lists mixed four formats). ISO 8601 order, 24-hour clock."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
TIME_FORMAT = "H:i:s"
# The date drill-down's months and days, in the same order.
YEAR_MONTH_FORMAT = "Y-m"
MONTH_DAY_FORMAT = "Y-m-d"
