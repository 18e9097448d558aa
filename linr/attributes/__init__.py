"""Item attributes on the device, and filters compiled into row masks over them.

    store = AttributeStore(device, schema={"ts": "int"}, fields=None)
    store.grow(capacity)
    prepared = store.prepare(list_of_attribute_dicts)   # validates, changes nothing
    store.write(rows, prepared)                         # cannot fail on bad input
    mask = store.mask(parse_filter('lang == "en"'), capacity)   # bool [capacity]

See docs/filters.md for the kinds, the storage design and its measurements.
"""

from linr.attributes.prepare import KINDS, PreparedAttributes
from linr.attributes.store import AttributeStore

__all__ = ["KINDS", "AttributeStore", "PreparedAttributes"]
