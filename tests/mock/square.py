#!/usr/bin/env python3
"""Mock of the Square API subset used by the `square` source plugin.

Reproduces /work/shared/specs/README.md §1 and the OpenAPI subset in
shared/specs/square/square-api-subset.json: ListLocations, SearchCatalogObjects,
BatchRetrieveInventoryCounts, SearchOrders (+ a few retrieve endpoints), the
Square error envelope, opaque cursors, soft deletes. See tests/mock/README.md.

    python3 tests/mock/square.py --port 0 [--seed 1 --items 50 ...]
"""
import copy
import decimal
import hashlib
import hmac
import json
import os
import random
import re
import string
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mockbase import (Mock, HTTPError, json_response, iso_ms, parse_time_us,  # noqa: E402
                      b64url, b64url_decode, deep_merge, main)

CATALOG_TYPES = ["ITEM", "IMAGE", "CATEGORY", "ITEM_VARIATION", "TAX", "DISCOUNT", "MODIFIER_LIST",
                 "MODIFIER", "PRICING_RULE", "PRODUCT_SET", "TIME_PERIOD", "MEASUREMENT_UNIT",
                 "SUBSCRIPTION_PLAN_VARIATION", "ITEM_OPTION", "ITEM_OPTION_VAL",
                 "CUSTOM_ATTRIBUTE_DEFINITION", "QUICK_AMOUNTS_SETTINGS", "SUBSCRIPTION_PLAN",
                 "AVAILABILITY_PERIOD"]
# Types nested inside other objects: not returned when object_types is unset.
NESTED_TYPES = {"ITEM_VARIATION", "MODIFIER", "ITEM_OPTION_VAL", "SUBSCRIPTION_PLAN_VARIATION"}
TYPED_KEY = {"ITEM": "item_data", "IMAGE": "image_data", "CATEGORY": "category_data",
             "ITEM_VARIATION": "item_variation_data", "TAX": "tax_data", "DISCOUNT": "discount_data",
             "MODIFIER_LIST": "modifier_list_data", "MODIFIER": "modifier_data",
             "PRICING_RULE": "pricing_rule_data", "PRODUCT_SET": "product_set_data",
             "TIME_PERIOD": "time_period_data", "MEASUREMENT_UNIT": "measurement_unit_data",
             "SUBSCRIPTION_PLAN_VARIATION": "subscription_plan_variation_data",
             "ITEM_OPTION": "item_option_data", "ITEM_OPTION_VAL": "item_option_value_data",
             "CUSTOM_ATTRIBUTE_DEFINITION": "custom_attribute_definition_data",
             "QUICK_AMOUNTS_SETTINGS": "quick_amounts_settings_data",
             "SUBSCRIPTION_PLAN": "subscription_plan_data",
             "AVAILABILITY_PERIOD": "availability_period_data"}
INVENTORY_STATES = ["CUSTOM", "IN_STOCK", "SOLD", "RETURNED_BY_CUSTOMER", "RESERVED_FOR_SALE",
                    "SOLD_ONLINE", "ORDERED_FROM_VENDOR", "RECEIVED_FROM_VENDOR", "IN_TRANSIT_TO",
                    "NONE", "WASTE", "UNLINKED_RETURN", "COMPOSED", "DECOMPOSED",
                    "SUPPORTED_BY_NEWER_VERSION", "IN_TRANSIT"]
UNTRACKED_STATES = {"NONE", "SOLD", "UNLINKED_RETURN"}
ORDER_STATES = ["OPEN", "COMPLETED", "CANCELED", "DRAFT"]
SORT_FIELDS = {"CREATED_AT": "created_at", "UPDATED_AT": "updated_at", "CLOSED_AT": "closed_at"}

UPPER32 = string.ascii_uppercase + "234567"
BASE62 = string.ascii_letters + string.digits

LOCATION_NAMES = ["Main Street", "Airport Kiosk", "Harbor Outlet", "Downtown", "Warehouse",
                  "Mall Pop-up", "University Avenue", "Riverside", "Old Town", "Market Hall"]
CITIES = [("San Francisco", "CA", "941"), ("Portland", "OR", "972"), ("Austin", "TX", "787"),
          ("Denver", "CO", "802"), ("Chicago", "IL", "606"), ("Brooklyn", "NY", "112")]
STREETS = ["Market St", "Elm St", "Oak Ave", "Pine St", "2nd Ave", "Harbor Blvd", "Mission St"]
TIMEZONES = {"CA": "America/Los_Angeles", "OR": "America/Los_Angeles", "TX": "America/Chicago",
             "CO": "America/Denver", "IL": "America/Chicago", "NY": "America/New_York"}
CATEGORY_NAMES = ["Beverages", "Bakery", "Apparel", "Accessories", "Home & Garden", "Snacks",
                  "Stationery", "Toys", "Electronics", "Seasonal"]
ADJECTIVES = ["Classic", "Organic", "Vintage", "Deluxe", "Everyday", "Mini", "Heavy-Duty",
              "Handmade", "Spicy", "Smoked", "Café", "Crème", "Nordic", "Rustic", "Zesty"]
NOUNS = ["Cold Brew", "Sourdough Loaf", "Hoodie", "Tote Bag", "Candle", "Croissant", "Notebook",
         "Mug", "T-Shirt", "Beanie", "Trail Mix", "Teapot", "Sticker Pack", "Scarf", "Lemonade",
         "Brownie", "Socks", "Water Bottle", "Plant Pot", "Card Deck"]
VARIATION_NAMES = {1: ["Regular"], 2: ["Small", "Large"], 3: ["Small", "Medium", "Large"],
                   4: ["XS", "S", "M", "L"], 5: ["XS", "S", "M", "L", "XL"]}


def d2s(d):
    """Decimal -> Square decimal string (no exponent, no trailing zeros)."""
    d = decimal.Decimal(d)
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "") else s


class SquareMock(Mock):
    name = "square"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--token", action="append", help="a valid access token (repeatable); default sq-test-token")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--locations", type=int, default=3)
        p.add_argument("--items", type=int, default=50)
        p.add_argument("--variations-per-item", type=int, default=2)
        p.add_argument("--categories", type=int, default=5)
        p.add_argument("--orders", type=int, default=40)
        p.add_argument("--base-time", default="2026-01-05T09:00:00Z",
                       help="generated data is stamped from this time on (a 30-day window)")
        p.add_argument("--currency", default="USD")
        p.add_argument("--data", help="load data from this JSON file instead of generating it")
        p.add_argument("--dump", help="write the generated data to this JSON file and exit")
        p.add_argument("--ragged-pages", action="store_true",
                       help="catalog pages are sometimes shorter than limit (the limit is advisory)")
        p.add_argument("--strict-catalog-limit", action="store_true",
                       help="catalog search limit > 1000 is a 400 INVALID_VALUE instead of ignored")
        p.add_argument("--no-begin-time-tombstones", action="store_true",
                       help="with begin_time, hide deleted objects unless include_deleted_objects")

    def setup_routes(self):
        a = self.args
        self.secret = hashlib.sha256(b"square-mock-cursor-%d" % a.seed).digest()
        r = self.route
        r("GET", r"/v2/locations", self.list_locations)
        r("GET", r"/v2/locations/(?P<id>[^/]+)", self.get_location)
        r("POST", r"/v2/catalog/search", self.search_catalog)
        r("GET", r"/v2/catalog/list", self.list_catalog)
        r("GET", r"/v2/catalog/object/(?P<id>[^/]+)", self.get_object)
        r("POST", r"/v2/catalog/batch-retrieve", self.batch_retrieve_objects)
        r("POST", r"/v2/inventory/counts/batch-retrieve", self.batch_counts)
        r("POST", r"/v2/inventory/batch-retrieve-counts", self.batch_counts)
        r("GET", r"/v2/inventory/(?P<id>[^/]+)", self.object_counts)
        r("POST", r"/v2/orders/search", self.search_orders)
        r("POST", r"/v2/orders/batch-retrieve", self.batch_retrieve_orders)
        r("GET", r"/v2/orders/(?P<id>[^/]+)", self.get_order)
        c = self.control
        c("POST", "upsert", self.ctl_upsert)
        c("POST", "delete", self.ctl_delete)
        c("POST", "deactivate_location", self.ctl_deactivate_location)
        c("POST", "order", self.ctl_order)
        c("POST", "config", self.ctl_config)
        c("POST", "tokens", self.ctl_tokens)

    # ------------------------------------------------------------------ errors
    @staticmethod
    def category_for(status):
        if status in (401, 403):
            return "AUTHENTICATION_ERROR"
        if status == 429:
            return "RATE_LIMIT_ERROR"
        if status >= 500:
            return "API_ERROR"
        return "INVALID_REQUEST_ERROR"

    def sq_error(self, status, code, detail, field=None, headers=None):
        e = {"category": self.category_for(status), "code": code, "detail": detail}
        if field:
            e["field"] = field
        return json_response(status, {"errors": [e]}, headers)

    def fail(self, status, code, detail, field=None):
        raise HTTPError(self.sq_error(status, code, detail, field))

    DEFAULT_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                     405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 408: "REQUEST_TIMEOUT",
                     409: "CONFLICT", 410: "GONE", 413: "REQUEST_ENTITY_TOO_LARGE",
                     415: "UNSUPPORTED_MEDIA_TYPE", 422: "UNPROCESSABLE_ENTITY", 429: "RATE_LIMITED",
                     500: "INTERNAL_SERVER_ERROR", 501: "NOT_IMPLEMENTED", 502: "BAD_GATEWAY",
                     503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}
    FAULT_DETAILS = {429: "This request was rate limited. Please retry later.",
                     401: "This request could not be authorized.",
                     500: "An internal error has occurred, and the API was unable to service your request.",
                     503: "The service is temporarily unavailable. Please retry later.",
                     502: "Bad gateway.", 504: "Gateway timeout."}

    def error_response(self, status, detail, code=None):
        return self.sq_error(status, code or self.DEFAULT_CODES.get(status, "INTERNAL_SERVER_ERROR"), detail)

    def fault_response(self, status, fault):
        return self.sq_error(status, self.DEFAULT_CODES.get(status, "INTERNAL_SERVER_ERROR"),
                             self.FAULT_DETAILS.get(status, "Injected error %d." % status))

    def not_found(self, req):
        return self.sq_error(404, "NOT_FOUND", "API endpoint for URL path `%s` and HTTP method `%s` is not found."
                             % (req.path, req.method))

    def bad_json(self, req, err):
        return self.sq_error(400, "BAD_REQUEST", "Invalid JSON body: %s" % err)

    def check_auth(self, req):
        h = req.header("authorization")
        tok = req.bearer()
        if h is None or tok is None or not tok:
            return self.sq_error(401, "UNAUTHORIZED",
                                 "The `Authorization` http header of your request was incorrectly formatted or missing.")
        if tok not in self.tokens:
            return self.sq_error(401, "UNAUTHORIZED", "This request could not be authorized.")
        v = req.header("square-version")
        if v is not None and not self.valid_version(v):
            return self.sq_error(400, "INVALID_SQUARE_VERSION_FORMAT",
                                 "Invalid Square-Version format: `%s`. Expected YYYY-MM-DD." % v)
        return None

    @staticmethod
    def valid_version(v):
        m = re.match(r"^(\d{4})-(\d{2})-(\d{2})$", v)
        if not m:
            return False
        y, mo, d = map(int, m.groups())
        return 2015 <= y <= 2100 and 1 <= mo <= 12 and 1 <= d <= 31

    # ------------------------------------------------------------------ ids / time
    def rid(self, n, alphabet=UPPER32, rng=None):
        rng = rng or self.id_rng
        return "".join(rng.choices(alphabet, k=n))

    def new_catalog_id(self, rng=None):
        while True:
            i = self.rid(24, rng=rng)
            if i not in self.objects:
                return i

    def now_iso(self):
        return iso_ms(self.now())

    def next_version(self):
        v = max(self.last_version + 1, int(self.now() * 1000))
        self.last_version = v
        return v

    _us_cache = {}

    def us(self, s):
        if s is None:
            return None
        v = self._us_cache.get(s)
        if v is None:
            v = parse_time_us(s)
            if len(self._us_cache) > 200000:
                self._us_cache.clear()
            self._us_cache[s] = v
        return v

    # ------------------------------------------------------------------ data
    def load(self):
        a = self.args
        self.tokens = set(a.token or ["sq-test-token"])
        self.config = {"ragged_pages": a.ragged_pages,
                       "strict_catalog_limit": a.strict_catalog_limit,
                       "begin_time_tombstones": not a.no_begin_time_tombstones}
        self.id_rng = random.Random(self.args.seed * 7919 + 17)
        self.objects = {}
        self.locations = {}
        self.counts = {}
        self.orders = {}
        self.last_version = 0
        self.merchant_id = None
        self.catalog_rev = getattr(self, "catalog_rev", 0) + 1
        self._var_index_rev = None
        if self.args.data:
            with open(self.args.data, encoding="utf-8") as f:
                self.load_data(json.load(f))
        else:
            self.generate()

    def load_data(self, data):
        self.merchant_id = data.get("merchant_id") or "MLMOCKMERCHANT"
        for loc in data.get("locations", []):
            self.locations[loc["id"]] = copy.deepcopy(loc)
        for o in data.get("catalog", data.get("objects", [])):
            o = copy.deepcopy(o)
            nested = (o.get("item_data") or {}).pop("variations", None) if o.get("type") == "ITEM" else None
            self.objects[o["id"]] = o
            for v in nested or []:
                v = copy.deepcopy(v)
                v.setdefault("type", "ITEM_VARIATION")
                v.setdefault("item_variation_data", {})["item_id"] = o["id"]
                self.objects[v["id"]] = v
        for o in self.objects.values():
            o.setdefault("is_deleted", False)
            o.setdefault("present_at_all_locations", True)
            o.setdefault("updated_at", self.args.base_time)
            o.setdefault("version", self.us(o["updated_at"]) // 1000)
            self.last_version = max(self.last_version, int(o["version"]))
        for c in data.get("counts", []):
            c = copy.deepcopy(c)
            c.setdefault("state", "IN_STOCK")
            c.setdefault("catalog_object_type", "ITEM_VARIATION")
            c["quantity"] = d2s(c.get("quantity", "0"))
            c.setdefault("calculated_at", self.args.base_time)
            c.setdefault("is_estimated", False)
            self.counts[(c["catalog_object_id"], c["location_id"], c["state"])] = c
        for o in data.get("orders", []):
            self.orders[o["id"]] = copy.deepcopy(o)

    def generate(self):
        a = self.args
        rng = random.Random(a.seed)
        base = parse_time_us(a.base_time) / 1e6
        cur = a.currency
        self.merchant_id = "ML" + self.rid(11, rng=rng)

        # locations
        locs = []
        for i in range(a.locations):
            name = LOCATION_NAMES[i] if i < len(LOCATION_NAMES) else "Store %d" % (i + 1)
            city, st, zip3 = CITIES[i % len(CITIES)]
            lid = "L" + self.rid(12, rng=rng)
            loc = {
                "id": lid, "name": name,
                "address": {"address_line_1": "%d %s" % (rng.randint(10, 999), rng.choice(STREETS)),
                            "locality": city, "administrative_district_level_1": st,
                            "postal_code": "%s%02d" % (zip3, rng.randint(0, 99)), "country": "US"},
                "timezone": TIMEZONES[st],
                "capabilities": ["CREDIT_CARD_PROCESSING", "AUTOMATIC_TRANSFERS"],
                "status": "INACTIVE" if (a.locations >= 3 and i == a.locations - 1) else "ACTIVE",
                "created_at": iso_s_ms(base - 86400 * (400 - 30 * i)),
                "merchant_id": self.merchant_id, "country": "US", "language_code": "en-US",
                "currency": cur, "phone_number": "+1 555-01%02d-%04d" % (i, rng.randint(0, 9999)),
                "business_name": "Etl Test Shop", "type": "PHYSICAL",
                "business_email": "shop+%d@example.com" % i, "mcc": "5999",
                "description": "%s location" % name,
            }
            locs.append(loc)
            self.locations[lid] = loc
        loc_ids = [l["id"] for l in locs]

        def stamp(t):
            return iso_ms(t)

        # categories (the last one is a child of the first when there are >= 4)
        cats = []
        for i in range(a.categories):
            name = CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else "Category %d" % (i + 1)
            t = base + 60 * i + rng.randint(0, 999) / 1000.0
            cid = self.new_catalog_id(rng)
            cd = {"name": name, "category_type": "REGULAR_CATEGORY", "is_top_level": True,
                  "online_visibility": True}
            if a.categories >= 4 and i == a.categories - 1:
                cd["parent_category"] = {"id": cats[0]["id"], "ordinal": 0}
                cd["is_top_level"] = False
                cd["root_category"] = cats[0]["id"]
            obj = {"type": "CATEGORY", "id": cid, "updated_at": stamp(t), "version": int(t * 1000),
                   "is_deleted": False, "present_at_all_locations": True, "category_data": cd}
            cats.append(obj)
            self.objects[cid] = obj

        # items and variations (an item and its variations share updated_at/version,
        # as a batch upsert does)
        vpi = max(1, a.variations_per_item)
        vnames = VARIATION_NAMES.get(vpi) or ["Option %d" % (k + 1) for k in range(vpi)]
        used_names = set()
        variations = []
        for i in range(a.items):
            name = "%s %s" % (rng.choice(ADJECTIVES), rng.choice(NOUNS))
            if name in used_names:
                name = "%s #%d" % (name, i + 1)
            used_names.add(name)
            t = base + 3600 + 600 * i + rng.randint(0, 999) / 1000.0
            iid = self.new_catalog_id(rng)
            present_all = (i % 7 != 3) or not loc_ids
            deleted = a.items >= 10 and i % 25 == 11
            idata = {"name": name, "description": "The %s, by Etl Test Shop." % name.lower(),
                     "description_html": "<p>The %s, by Etl Test Shop.</p>" % name.lower(),
                     "description_plaintext": "The %s, by Etl Test Shop." % name.lower(),
                     "is_taxable": True, "is_archived": i % 19 == 5, "product_type": "REGULAR",
                     "skip_modifier_screen": False, "is_alcoholic": False}
            if cats:
                cat = cats[i % len(cats)]
                idata["categories"] = [{"id": cat["id"], "ordinal": i}]
                idata["reporting_category"] = {"id": cat["id"], "ordinal": i}
            item = {"type": "ITEM", "id": iid, "updated_at": stamp(t), "version": int(t * 1000),
                    "is_deleted": deleted, "present_at_all_locations": present_all, "item_data": idata}
            if not present_all:
                item["present_at_location_ids"] = [loc_ids[i % len(loc_ids)]]
            self.objects[iid] = item
            for k in range(vpi):
                vid = self.new_catalog_id(rng)
                vd = {"item_id": iid, "name": vnames[k], "sku": "SKU-%04d-%d" % (i + 1, k + 1),
                      "ordinal": k + 1, "pricing_type": "FIXED_PRICING",
                      "price_money": {"amount": rng.randint(1, 120) * 25 + rng.choice([0, 0, 49, 99]),
                                      "currency": cur},
                      "track_inventory": True, "sellable": True, "stockable": True,
                      "inventory_alert_type": "NONE"}
                if rng.random() < 0.6:
                    vd["upc"] = "".join(rng.choice(string.digits) for _ in range(12))
                if (i * vpi + k) % 23 == 7:
                    vd["pricing_type"] = "VARIABLE_PRICING"
                    del vd["price_money"]
                if present_all and loc_ids and rng.random() < 0.15:
                    vd["location_overrides"] = [{"location_id": loc_ids[0], "track_inventory": True,
                                                 "price_money": {"amount": rng.randint(1, 120) * 25,
                                                                 "currency": cur}}]
                var = {"type": "ITEM_VARIATION", "id": vid, "updated_at": stamp(t), "version": int(t * 1000),
                       "is_deleted": deleted, "present_at_all_locations": present_all,
                       "item_variation_data": vd}
                if not present_all:
                    var["present_at_location_ids"] = list(item["present_at_location_ids"])
                self.objects[vid] = var
                variations.append((var, item))
        # one variation deleted on its own (not its item)
        live = [v for v, it in variations if not v["is_deleted"]]
        if len(live) > 4 and vpi > 1:
            v = live[3]
            v["is_deleted"] = True
            t = self.us(v["updated_at"]) / 1e6 + 86400 * 2
            v["updated_at"] = stamp(t)
            v["version"] = int(t * 1000)
        for o in self.objects.values():
            self.last_version = max(self.last_version, o["version"])

        # inventory counts: IN_STOCK per variation and location, some WASTE
        for var, item in variations:
            if item["is_deleted"]:
                continue
            where = loc_ids if item["present_at_all_locations"] else item.get("present_at_location_ids", [])
            for lid in where:
                t = self.us(var["updated_at"]) / 1e6 + rng.randint(60, 86400 * 20) + rng.randint(0, 999) / 1000.0
                r = rng.random()
                if r < 0.05:
                    q = "%d.5" % rng.randint(0, 20)
                elif r < 0.08:
                    q = str(-rng.randint(1, 3))
                else:
                    q = str(rng.randint(0, 120))
                self.put_count(var["id"], lid, "IN_STOCK", q, stamp(t))
                if rng.random() < 0.1:
                    self.put_count(var["id"], lid, "WASTE", str(rng.randint(1, 4)), stamp(t + 1.5))

        # orders
        sellable = [(v, it) for v, it in variations
                    if not v["is_deleted"] and "price_money" in v["item_variation_data"]]
        active = [l for l in locs if l["status"] == "ACTIVE"] or locs
        span = 86400 * 30
        for i in range(a.orders if sellable and locs else 0):
            loc = locs[-1] if (i % 10 == 9 and len(locs) > len(active)) else active[i % len(active)]
            created = base + 7200 + span * i / max(1, a.orders) + rng.randint(0, 3000) + rng.randint(0, 999) / 1000.0
            r = rng.random()
            state = "COMPLETED" if r < 0.75 else ("OPEN" if r < 0.88 else "CANCELED")
            lines = []
            for _ in range(rng.randint(1, 4)):
                var, item = rng.choice(sellable)
                lines.append({"catalog_object_id": var["id"], "quantity": str(rng.randint(1, 3))})
            o = {"id": self.rid(27, BASE62, rng), "location_id": loc["id"],
                 "source": {"name": "Point of Sale"}, "line_items": lines, "state": state,
                 "created_at": stamp(created), "version": 1}
            updated = created + rng.randint(5, 600)
            if state == "COMPLETED" and rng.random() < 0.2:
                updated += 86400 * rng.randint(1, 3)       # adjusted later
                o["version"] = rng.randint(2, 4)
            o["updated_at"] = stamp(updated)
            if state in ("COMPLETED", "CANCELED"):
                o["closed_at"] = stamp(min(updated, created + 600))
            self.fill_order(o, rng)
            if state == "COMPLETED":
                o["tenders"] = [self.make_tender(o, "CARD" if rng.random() < 0.7 else "CASH", rng)]
            self.orders[o["id"]] = o

    def put_count(self, oid, lid, state, qty, when):
        self.counts[(oid, lid, state)] = {
            "catalog_object_id": oid, "catalog_object_type": "ITEM_VARIATION", "state": state,
            "location_id": lid, "quantity": d2s(qty), "calculated_at": when, "is_estimated": False}

    def make_tender(self, o, kind, rng=None):
        rng = rng or self.id_rng
        amt = dict(o["total_money"])
        t = {"id": self.rid(24, BASE62, rng), "location_id": o["location_id"], "transaction_id": o["id"],
             "created_at": o.get("closed_at") or o["updated_at"], "amount_money": amt, "type": kind}
        if kind == "CARD":
            t["card_details"] = {"status": "CAPTURED", "entry_method": "EMV",
                                 "card": {"card_brand": rng.choice(["VISA", "MASTERCARD", "AMERICAN_EXPRESS"]),
                                          "last_4": "%04d" % rng.randint(0, 9999)}}
            t["processing_fee_money"] = {"amount": int(amt["amount"] * 0.026 + 10), "currency": amt["currency"]}
        else:
            t["cash_details"] = {"buyer_tendered_money": amt,
                                 "change_back_money": {"amount": 0, "currency": amt["currency"]}}
        return t

    def fill_order(self, o, rng=None):
        """Complete line items from the catalog and compute the money rollups."""
        rng = rng or self.id_rng
        cur = self.args.currency
        total = 0
        for li in o.get("line_items") or []:
            li.setdefault("uid", self.rid(22, BASE62, rng))
            li["quantity"] = d2s(li.get("quantity", "1"))
            var = self.objects.get(li.get("catalog_object_id") or "")
            if var is not None and var["type"] == "ITEM_VARIATION":
                vd = var["item_variation_data"]
                item = self.objects.get(vd.get("item_id"))
                li.setdefault("name", item["item_data"]["name"] if item else vd.get("name"))
                li.setdefault("variation_name", vd.get("name"))
                li.setdefault("catalog_version", var["version"])
                if "base_price_money" not in li and "price_money" in vd:
                    li["base_price_money"] = dict(vd["price_money"])
                li.setdefault("item_type", "ITEM")
            else:
                li.setdefault("item_type", "CUSTOM_AMOUNT")
            bp = li.setdefault("base_price_money", {"amount": 0, "currency": cur})
            c = bp.get("currency", cur)
            amount = int((decimal.Decimal(bp["amount"]) * decimal.Decimal(li["quantity"]))
                         .to_integral_value(decimal.ROUND_HALF_UP))
            m = {"amount": amount, "currency": c}
            li["variation_total_price_money"] = dict(m)
            li["gross_sales_money"] = dict(m)
            li["total_tax_money"] = {"amount": 0, "currency": c}
            li["total_discount_money"] = {"amount": 0, "currency": c}
            li["total_money"] = dict(m)
            total += amount
        zero = {"amount": 0, "currency": cur}
        o["total_money"] = {"amount": total, "currency": cur}
        o["total_tax_money"] = dict(zero)
        o["total_discount_money"] = dict(zero)
        o["total_tip_money"] = dict(zero)
        o["total_service_charge_money"] = dict(zero)
        o["net_amounts"] = {"total_money": dict(o["total_money"]), "tax_money": dict(zero),
                            "discount_money": dict(zero), "tip_money": dict(zero),
                            "service_charge_money": dict(zero)}
        due = 0 if o.get("state") in ("COMPLETED", "CANCELED") else total
        o["net_amount_due_money"] = {"amount": due, "currency": cur}

    def state(self):
        return {"merchant_id": self.merchant_id,
                "locations": sorted(self.locations.values(), key=lambda l: (l["name"], l["id"])),
                "catalog": sorted(self.objects.values(), key=lambda o: (o["type"], o["id"])),
                "counts": sorted(self.counts.values(),
                                 key=lambda c: (c["catalog_object_id"], c["location_id"], c["state"])),
                "orders": sorted(self.orders.values(), key=lambda o: o["id"]),
                "latest_time": self.latest_time(), "config": dict(self.config)}

    def before_serve(self):
        if self.args.dump:
            with open(self.args.dump, "w", encoding="utf-8") as f:
                st = self.state()
                st.pop("config", None)
                st.pop("latest_time", None)
                json.dump(st, f, indent=1, ensure_ascii=False, sort_keys=True)
                f.write("\n")
            return 0
        return None

    # ------------------------------------------------------------------ request validation
    def body(self, req):
        b = req.json()
        if b is None:
            return {}
        if not isinstance(b, dict):
            self.fail(400, "EXPECTED_OBJECT", "Expected a JSON object as the request body.")
        return b

    def get_bool(self, b, name):
        v = b.get(name)
        if v is None:
            return False
        if not isinstance(v, bool):
            self.fail(400, "EXPECTED_BOOLEAN", "Expected a boolean value for `%s`." % name, name)
        return v

    def get_int(self, b, name, field=None):
        v = b.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(400, "EXPECTED_INTEGER", "Expected an integer value for `%s`." % name, field or name)
        return v

    def get_str_list(self, b, name, field=None):
        v = b.get(name)
        if v is None:
            return None
        if not isinstance(v, list):
            self.fail(400, "EXPECTED_ARRAY", "Expected an array for `%s`." % name, field or name)
        for i, x in enumerate(v):
            if not isinstance(x, str):
                self.fail(400, "EXPECTED_STRING", "Expected a string in `%s`." % name, "%s[%d]" % (field or name, i))
        return v

    def get_time(self, b, name, field=None):
        v = b.get(name)
        if v is None:
            return None
        try:
            return parse_time_us(v)
        except ValueError:
            self.fail(400, "INVALID_TIME", "Invalid RFC 3339 timestamp for `%s`: %r." % (name, v), field or name)

    def get_enum_list(self, b, name, allowed, field=None):
        v = self.get_str_list(b, name, field)
        if v is None:
            return None
        for i, x in enumerate(v):
            if x not in allowed:
                self.fail(400, "INVALID_ENUM_VALUE", "Enum value `%s` is not a valid value for `%s`." % (x, name),
                          "%s[%d]" % (field or name, i))
        return v

    # ------------------------------------------------------------------ cursors
    def fingerprint(self, kind, parts):
        raw = json.dumps([kind, parts], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def make_cursor(self, fp, key):
        payload = json.dumps([fp, key], separators=(",", ":")).encode()
        sig = hmac.new(self.secret, payload, hashlib.sha256).digest()[:12]
        return b64url(payload + sig)

    def read_cursor(self, cursor, fp, what="query"):
        if not isinstance(cursor, str) or not cursor:
            self.fail(400, "INVALID_CURSOR", "The pagination cursor is invalid.", "cursor")
        try:
            raw = b64url_decode(cursor)
            payload, sig = raw[:-12], raw[-12:]
            good = hmac.new(self.secret, payload, hashlib.sha256).digest()[:12]
            if len(raw) <= 12 or not hmac.compare_digest(sig, good):
                raise ValueError("signature")
            got_fp, key = json.loads(payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            self.fail(400, "INVALID_CURSOR", "The pagination cursor `%s` is invalid." % cursor[:40], "cursor")
        if got_fp != fp:
            self.fail(400, "INVALID_CURSOR",
                      "The pagination cursor does not belong to this %s: resend the original %s with it."
                      % (what, what), "cursor")
        return key

    def page(self, keyed, cursor_key, size, fp):
        """keyed: sorted list of (key, value). Returns (values, next_cursor)."""
        start = 0
        if cursor_key is not None:
            ck = tuple(cursor_key)
            lo, hi = 0, len(keyed)
            while lo < hi:
                mid = (lo + hi) // 2
                if keyed[mid][0] <= ck:
                    lo = mid + 1
                else:
                    hi = mid
            start = lo
        chunk = keyed[start:start + size]
        nxt = None
        if start + size < len(keyed) and chunk:
            nxt = self.make_cursor(fp, list(chunk[-1][0]))
        return [v for _, v in chunk], nxt

    # ------------------------------------------------------------------ locations
    def list_locations(self, req):
        locs = sorted(self.locations.values(), key=lambda l: (l.get("name", ""), l["id"]))
        return json_response(200, {"locations": locs} if locs else {})

    def get_location(self, req):
        lid = req.params["id"]
        if lid == "main":
            locs = sorted(self.locations.values(), key=lambda l: l.get("created_at", ""))
            loc = next((l for l in locs if l.get("status") == "ACTIVE"), None)
        else:
            loc = self.locations.get(lid)
        if loc is None:
            self.fail(404, "NOT_FOUND", "Location `%s` not found." % lid)
        return json_response(200, {"location": loc})

    # ------------------------------------------------------------------ catalog
    def variations_of(self):
        """item id -> its variation objects (rebuilt when the catalog changes)."""
        if self._var_index_rev != self.catalog_rev:
            idx = {}
            for v in self.objects.values():
                if v["type"] == "ITEM_VARIATION":
                    idx.setdefault(v["item_variation_data"].get("item_id"), []).append(v)
            self._var_index = idx
            self._var_index_rev = self.catalog_rev
        return self._var_index

    def latest_time(self):
        best = None
        for o in self.objects.values():
            if best is None or self.us(o["updated_at"]) > self.us(best):
                best = o["updated_at"]
        return best

    def render(self, o, path_to_root=False):
        """A stored catalog object as the API returns it (items nest their variations).

        Shallow copies only: the result is serialised before the lock is released."""
        out = dict(o)
        if o["type"] == "ITEM":
            vs = [v for v in self.variations_of().get(o["id"], ())
                  if o["is_deleted"] or not v["is_deleted"]]
            vs.sort(key=lambda v: (v["item_variation_data"].get("ordinal", 0), v["id"]))
            if vs:
                out["item_data"] = dict(o.get("item_data") or {}, variations=vs)
        if o["type"] == "CATEGORY" and path_to_root:
            path, seen = [], set()
            cur = (o.get("category_data", {}).get("parent_category") or {}).get("id")
            while cur and cur in self.objects and cur not in seen:
                seen.add(cur)
                p = self.objects[cur]
                path.append({"category_id": cur, "category_name": p.get("category_data", {}).get("name")})
                cur = (p.get("category_data", {}).get("parent_category") or {}).get("id")
            out["category_data"] = dict(o.get("category_data") or {}, path_to_root=path)
        return out

    def related(self, objs):
        have = {o["id"] for o in objs}
        want = []
        for o in objs:
            if o["type"] == "ITEM":
                d = o.get("item_data", {})
                for c in d.get("categories") or []:
                    want.append(c.get("id"))
                if d.get("reporting_category"):
                    want.append(d["reporting_category"].get("id"))
                want.extend(d.get("tax_ids") or [])
                want.extend(d.get("image_ids") or [])
            elif o["type"] == "ITEM_VARIATION":
                want.append(o["item_variation_data"].get("item_id"))
            elif o["type"] == "CATEGORY":
                p = o.get("category_data", {}).get("parent_category")
                if p:
                    want.append(p.get("id"))
        out = []
        for i in want:
            if i and i not in have and i in self.objects and not self.objects[i]["is_deleted"]:
                have.add(i)
                out.append(self.render(self.objects[i]))
        return out

    @staticmethod
    def attr(o, name):
        if name in ("id", "type"):
            return o.get(name)
        d = o.get(TYPED_KEY.get(o["type"], ""), {}) or {}
        return d.get(name)

    def query_filter(self, q):
        if q is None:
            return lambda o: True
        if not isinstance(q, dict):
            self.fail(400, "EXPECTED_OBJECT", "Expected an object for `query`.", "query")
        supported = {"exact_query", "set_query", "prefix_query", "range_query", "text_query"}
        given = [k for k, v in q.items() if v is not None]
        for k in given:
            if k not in supported:
                self.fail(400, "BAD_REQUEST", "The mock does not implement `query.%s`." % k, "query." + k)
        if len(given) > 1:
            self.fail(400, "BAD_REQUEST", "The mock implements one query kind at a time.", "query")
        if not given:
            return lambda o: True
        kind = given[0]
        spec = q[kind]
        if not isinstance(spec, dict):
            self.fail(400, "EXPECTED_OBJECT", "Expected an object for `query.%s`." % kind, "query." + kind)

        def low(x):
            return x.lower() if isinstance(x, str) else x

        def need(name):
            if name not in spec:
                self.fail(400, "MISSING_REQUIRED_PARAMETER", "Missing required parameter `%s`." % name,
                          "query.%s.%s" % (kind, name))
            return spec[name]

        if kind == "exact_query":
            an, av = need("attribute_name"), need("attribute_value")
            return lambda o: low(self.attr(o, an)) == low(av)
        if kind == "set_query":
            an, avs = need("attribute_name"), need("attribute_values")
            s = {low(x) for x in avs}
            return lambda o: low(self.attr(o, an)) in s
        if kind == "prefix_query":
            an, ap = need("attribute_name"), need("attribute_prefix")
            return lambda o: isinstance(self.attr(o, an), str) and self.attr(o, an).lower().startswith(ap.lower())
        if kind == "range_query":
            an = need("attribute_name")
            lo, hi = spec.get("attribute_min_value"), spec.get("attribute_max_value")

            def rq(o):
                v = self.attr(o, an)
                if isinstance(v, dict) and "amount" in v:
                    v = v["amount"]
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    return False
                return (lo is None or v >= lo) and (hi is None or v <= hi)
            return rq
        kws = [k.lower() for k in need("keywords")]

        def tq(o):
            text = " ".join(str(self.attr(o, n) or "") for n in ("name", "description", "sku", "upc",
                                                               "abbreviation")).lower()
            words = re.split(r"\W+", text)
            return all(any(w.startswith(k) for w in words) for k in kws)
        return tq

    def search_catalog(self, req):
        b = self.body(req)
        types = self.get_enum_list(b, "object_types", CATALOG_TYPES)
        if not types:
            types = [t for t in CATALOG_TYPES if t not in NESTED_TYPES]
        include_deleted = self.get_bool(b, "include_deleted_objects")
        include_related = self.get_bool(b, "include_related_objects")
        path_to_root = self.get_bool(b, "include_category_path_to_root")
        if include_deleted and path_to_root:
            self.fail(400, "CONFLICTING_PARAMETERS", "`include_deleted_objects` and "
                      "`include_category_path_to_root` cannot both be true.", "include_category_path_to_root")
        begin = self.get_time(b, "begin_time")
        limit = self.get_int(b, "limit")
        if limit is not None and limit > 1000 and self.config["strict_catalog_limit"]:
            self.fail(400, "INVALID_VALUE", "`limit` must be at most 1000.", "limit")
        if limit is None or limit <= 0 or limit > 1000:
            limit = 100     # the spec: out-of-range limits are ignored
        match = self.query_filter(b.get("query"))
        fp = self.fingerprint("catalog/search", [sorted(types), include_deleted, b.get("begin_time"),
                                                 b.get("query"), include_related, path_to_root])
        ckey = self.read_cursor(b["cursor"], fp) if b.get("cursor") is not None else None
        tset = set(types)
        show_deleted = include_deleted or (begin is not None and self.config["begin_time_tombstones"])
        keyed = []
        for o in self.objects.values():
            if o["type"] not in tset:
                continue
            if o.get("is_deleted") and not show_deleted:
                continue
            u = self.us(o["updated_at"])
            if begin is not None and not u > begin:
                continue
            if not match(o):
                continue
            keyed.append(((u, o["id"]), o))
        keyed.sort(key=lambda kv: kv[0])
        size = limit
        if self.config["ragged_pages"] and limit > 1:
            h = hashlib.sha256(json.dumps([self.args.seed, ckey]).encode()).digest()
            size = max(1, limit // 2 + h[0] % (limit - limit // 2 + 1))
        objs, nxt = self.page(keyed, ckey, size, fp)
        out = {}
        rendered = [self.render(o, path_to_root) for o in objs]
        if rendered:
            out["objects"] = rendered
            if include_related:
                rel = self.related(objs)
                if rel:
                    out["related_objects"] = rel
        if nxt:
            out["cursor"] = nxt
        lt = self.latest_time()
        if lt:
            out["latest_time"] = lt
        return json_response(200, out)

    def list_catalog(self, req):
        types_arg = req.arg("types")
        if types_arg:
            types = [t.strip().upper() for t in types_arg.split(",") if t.strip()]
            for t in types:
                if t not in CATALOG_TYPES:
                    self.fail(400, "INVALID_ENUM_VALUE", "Enum value `%s` is not a valid CatalogObjectType." % t,
                              "types")
        else:
            types = [t for t in CATALOG_TYPES if t not in NESTED_TYPES]
        fp = self.fingerprint("catalog/list", [sorted(types)])
        cur = req.arg("cursor")
        ckey = self.read_cursor(cur, fp) if cur is not None else None
        tset = set(types)
        keyed = sorted(((o["type"], o["id"]), o) for o in self.objects.values()
                       if o["type"] in tset and not o.get("is_deleted"))
        objs, nxt = self.page(keyed, ckey, 100, fp)
        out = {}
        if objs:
            out["objects"] = [self.render(o) for o in objs]
        if nxt:
            out["cursor"] = nxt
        return json_response(200, out)

    def get_object(self, req):
        o = self.objects.get(req.params["id"])
        if o is None or o.get("is_deleted"):
            self.fail(404, "NOT_FOUND", "Object with ID `%s` not found." % req.params["id"])
        out = {"object": self.render(o)}
        if req.arg("include_related_objects", "false").lower() == "true":
            rel = self.related([o])
            if rel:
                out["related_objects"] = rel
        return json_response(200, out)

    def batch_retrieve_objects(self, req):
        b = self.body(req)
        ids = self.get_str_list(b, "object_ids")
        if not ids:
            self.fail(400, "MISSING_REQUIRED_PARAMETER", "Missing required parameter `object_ids`.", "object_ids")
        include_deleted = self.get_bool(b, "include_deleted_objects")
        objs = [self.objects[i] for i in ids if i in self.objects
                and (include_deleted or not self.objects[i].get("is_deleted"))]
        out = {}
        if objs:
            out["objects"] = [self.render(o) for o in objs]
            if self.get_bool(b, "include_related_objects"):
                rel = self.related(objs)
                if rel:
                    out["related_objects"] = rel
        return json_response(200, out)

    # ------------------------------------------------------------------ inventory
    def batch_counts(self, req):
        b = self.body(req)
        oids = self.get_str_list(b, "catalog_object_ids")
        lids = self.get_str_list(b, "location_ids")
        states = self.get_enum_list(b, "states", INVENTORY_STATES)
        after = self.get_time(b, "updated_after")
        limit = self.get_int(b, "limit")
        if limit is None:
            limit = 1000
        if limit < 1:
            self.fail(400, "VALUE_TOO_LOW", "`limit` must be at least 1.", "limit")
        if limit > 1000:
            self.fail(400, "VALUE_TOO_HIGH", "`limit` must be at most 1000.", "limit")
        fp = self.fingerprint("inventory/counts", [oids, lids, states, b.get("updated_after")])
        ckey = self.read_cursor(b["cursor"], fp) if b.get("cursor") is not None else None
        return json_response(200, self._counts(oids, lids, states, after, limit, fp, ckey))

    def _counts(self, oids, lids, states, after, limit, fp, ckey):
        oset = set(oids) if oids is not None else None
        lset = set(lids) if lids is not None else None
        sset = set(states) - UNTRACKED_STATES if states else None
        keyed = []
        for c in self.counts.values():
            if c["state"] in UNTRACKED_STATES:
                continue
            if oset is not None and c["catalog_object_id"] not in oset:
                continue
            if lset is not None and c["location_id"] not in lset:
                continue
            if sset is not None and c["state"] not in sset:
                continue
            u = self.us(c["calculated_at"])
            if after is not None and not u > after:
                continue
            # newest first, ties by object, location, state
            keyed.append(((-u, c["catalog_object_id"], c["location_id"], c["state"]), c))
        keyed.sort(key=lambda kv: kv[0])
        counts, nxt = self.page(keyed, ckey, limit, fp)
        out = {}
        if counts:
            out["counts"] = counts
        if nxt:
            out["cursor"] = nxt
        return out

    def object_counts(self, req):
        oid = req.params["id"]
        lids = [x for x in (req.arg("location_ids") or "").split(",") if x] or None
        fp = self.fingerprint("inventory/object", [oid, lids])
        cur = req.arg("cursor")
        ckey = self.read_cursor(cur, fp) if cur is not None else None
        return json_response(200, self._counts([oid], lids, None, None, 1000, fp, ckey))

    # ------------------------------------------------------------------ orders
    def search_orders(self, req):
        b = self.body(req)
        lids = self.get_str_list(b, "location_ids")
        if not lids:
            self.fail(400, "MISSING_REQUIRED_PARAMETER", "Missing required parameter `location_ids`.",
                      "location_ids")
        if len(lids) > 10:
            self.fail(400, "ARRAY_LENGTH_TOO_LONG", "`location_ids` must contain at most 10 elements.",
                      "location_ids")
        for i, lid in enumerate(lids):
            if lid not in self.locations:
                self.fail(400, "INVALID_VALUE", "Location `%s` is not valid for this merchant." % lid,
                          "location_ids[%d]" % i)
        limit = self.get_int(b, "limit")
        if limit is None:
            limit = 500
        if limit < 1:
            self.fail(400, "VALUE_TOO_LOW", "`limit` must be at least 1.", "limit")
        if limit > 1000:
            self.fail(400, "VALUE_TOO_HIGH", "`limit` must be at most 1000.", "limit")
        return_entries = self.get_bool(b, "return_entries")
        q = b.get("query") or {}
        if not isinstance(q, dict):
            self.fail(400, "EXPECTED_OBJECT", "Expected an object for `query`.", "query")
        flt = q.get("filter") or {}
        srt = q.get("sort")
        if not isinstance(flt, dict):
            self.fail(400, "EXPECTED_OBJECT", "Expected an object for `query.filter`.", "query.filter")

        # sort
        if srt is None:
            sort_field, sort_order = "CREATED_AT", "DESC"
        else:
            if not isinstance(srt, dict):
                self.fail(400, "EXPECTED_OBJECT", "Expected an object for `query.sort`.", "query.sort")
            sort_field = srt.get("sort_field")
            if sort_field is None:
                self.fail(400, "MISSING_REQUIRED_PARAMETER", "Missing required parameter `sort_field`.",
                          "query.sort.sort_field")
            if sort_field not in SORT_FIELDS:
                self.fail(400, "INVALID_ENUM_VALUE", "Enum value `%s` is not a valid SearchOrdersSortField."
                          % sort_field, "query.sort.sort_field")
            sort_order = srt.get("sort_order") or "DESC"
            if sort_order not in ("ASC", "DESC"):
                self.fail(400, "INVALID_SORT_ORDER", "Sort order `%s` is not valid (ASC or DESC)." % sort_order,
                          "query.sort.sort_order")

        # state filter
        states = None
        sf = flt.get("state_filter")
        if sf is not None:
            if not isinstance(sf, dict) or not sf.get("states"):
                self.fail(400, "MISSING_REQUIRED_PARAMETER", "Missing required parameter `states`.",
                          "query.filter.state_filter.states")
            states = set(self.get_enum_list(sf, "states", ORDER_STATES, "query.filter.state_filter.states"))
        if sort_field == "CLOSED_AT" and (states is None or not states <= {"COMPLETED", "CANCELED"}):
            self.fail(400, "INVALID_VALUE", "Sorting by CLOSED_AT needs a state_filter with closed states only "
                      "(COMPLETED, CANCELED).", "query.filter.state_filter")

        # date/time filter: its field must be the sort field
        ranges = {}
        dtf = flt.get("date_time_filter")
        if dtf is not None:
            if not isinstance(dtf, dict):
                self.fail(400, "EXPECTED_OBJECT", "Expected an object for `date_time_filter`.",
                          "query.filter.date_time_filter")
            for name, fld in (("CREATED_AT", "created_at"), ("UPDATED_AT", "updated_at"),
                              ("CLOSED_AT", "closed_at")):
                tr = dtf.get(fld)
                if tr is None:
                    continue
                field = "query.filter.date_time_filter.%s" % fld
                if not isinstance(tr, dict):
                    self.fail(400, "EXPECTED_OBJECT", "Expected a TimeRange object.", field)
                if name != sort_field:
                    self.fail(400, "INVALID_VALUE",
                              "The sort field `%s` must match the date_time_filter field `%s`." % (sort_field, fld),
                              "query.sort.sort_field")
                s = self.get_time(tr, "start_at", field + ".start_at")
                e = self.get_time(tr, "end_at", field + ".end_at")
                if s is not None and e is not None and s > e:
                    self.fail(400, "INVALID_TIME_RANGE", "`start_at` must be before `end_at`.", field)
                ranges[fld] = (s, e)
        sources = None
        srcf = flt.get("source_filter")
        if srcf:
            sources = set(self.get_str_list(srcf, "source_names", "query.filter.source_filter.source_names") or [])
        customers = None
        cf = flt.get("customer_filter")
        if cf:
            customers = set(self.get_str_list(cf, "customer_ids", "query.filter.customer_filter.customer_ids") or [])
        ftypes = fstates = None
        ff = flt.get("fulfillment_filter")
        if ff:
            ftypes = set(ff.get("fulfillment_types") or []) or None
            fstates = set(ff.get("fulfillment_states") or []) or None

        fp = self.fingerprint("orders/search", [lids, q, return_entries])
        ckey = self.read_cursor(b["cursor"], fp, "query") if b.get("cursor") is not None else None

        lset = set(lids)
        key_field = SORT_FIELDS[sort_field]
        desc = sort_order == "DESC"
        keyed = []
        for o in self.orders.values():
            if o["location_id"] not in lset:
                continue
            if states is not None and o.get("state") not in states:
                continue
            if o.get("state") == "DRAFT" and (states is None or "DRAFT" not in states):
                continue
            ok = True
            for fld, (s, e) in ranges.items():
                v = o.get(fld)
                if v is None:
                    ok = False
                    break
                u = self.us(v)
                if (s is not None and u < s) or (e is not None and u >= e):
                    ok = False
                    break
            if not ok:
                continue
            if sources is not None and (o.get("source") or {}).get("name") not in sources:
                continue
            if customers is not None:
                cids = {o.get("customer_id")} | {t.get("customer_id") for t in o.get("tenders") or []}
                if not cids & customers:
                    continue
            if ftypes or fstates:
                fs = o.get("fulfillments") or []
                if not any((not ftypes or f.get("type") in ftypes) and (not fstates or f.get("state") in fstates)
                           for f in fs):
                    continue
            v = o.get(key_field)
            if v is None:
                continue
            u = self.us(v)
            keyed.append((((-u if desc else u), o["id"]), o))
        keyed.sort(key=lambda kv: kv[0])
        orders, nxt = self.page(keyed, ckey, limit, fp)
        out = {}
        if orders:
            if return_entries:
                out["order_entries"] = [{"order_id": o["id"], "version": o.get("version", 1),
                                         "location_id": o["location_id"]} for o in orders]
            else:
                out["orders"] = orders
        if nxt:
            out["cursor"] = nxt
        return json_response(200, out)

    def get_order(self, req):
        o = self.orders.get(req.params["id"])
        if o is None:
            self.fail(404, "NOT_FOUND", "Order `%s` not found." % req.params["id"])
        return json_response(200, {"order": o})

    def batch_retrieve_orders(self, req):
        b = self.body(req)
        ids = self.get_str_list(b, "order_ids")
        if not ids:
            self.fail(400, "MISSING_REQUIRED_PARAMETER", "Missing required parameter `order_ids`.", "order_ids")
        orders = [self.orders[i] for i in ids if i in self.orders]
        return json_response(200, {"orders": orders} if orders else {})

    # ------------------------------------------------------------------ control
    def cfail(self, msg):
        raise HTTPError(json_response(400, {"error": msg}))

    def ctl_body(self, req):
        b = req.json()
        if not isinstance(b, dict):
            self.cfail("expected a JSON object")
        return b

    def ctl_upsert(self, req):
        b = self.ctl_body(req)
        saved = (dict(self.objects), dict(self.counts), copy.deepcopy(self.locations), self.last_version)
        try:
            return self._upsert(b)
        except HTTPError:
            self.objects, self.counts, self.locations, self.last_version = saved
            self.catalog_rev += 1
            raise

    def _upsert(self, b):
        now = self.now_iso()
        version = self.next_version()
        idmap = {}
        out_objs, out_counts, out_locs = [], [], []

        def real_id(i):
            if isinstance(i, str) and i.startswith("#"):
                if i not in idmap:
                    idmap[i] = self.new_catalog_id()
                return idmap[i]
            return i

        queue = []
        for n, o in enumerate(b.get("objects") or []):
            if not isinstance(o, dict):
                self.cfail("objects[] must be objects")
            o = copy.deepcopy(o)
            if not o.get("id"):
                o["id"] = "#__auto%d" % n
            nested = None
            if o.get("type", (self.objects.get(o.get("id") or "") or {}).get("type")) == "ITEM":
                nested = (o.get("item_data") or {}).pop("variations", None)
            queue.append(o)
            for v in nested or []:
                v = copy.deepcopy(v)
                v.setdefault("type", "ITEM_VARIATION")
                v.setdefault("item_variation_data", {})["item_id"] = o["id"]
                queue.append(v)
        for o in queue:
            oid = real_id(o.get("id")) if o.get("id") else self.new_catalog_id()
            o["id"] = oid
            vd = o.get("item_variation_data")
            if isinstance(vd, dict) and "item_id" in vd:
                vd["item_id"] = real_id(vd["item_id"])
            idata = o.get("item_data")
            if isinstance(idata, dict):
                for c in idata.get("categories") or []:
                    c["id"] = real_id(c.get("id"))
                if isinstance(idata.get("reporting_category"), dict):
                    idata["reporting_category"]["id"] = real_id(idata["reporting_category"].get("id"))
            cd = o.get("category_data")
            if isinstance(cd, dict) and isinstance(cd.get("parent_category"), dict):
                cd["parent_category"]["id"] = real_id(cd["parent_category"].get("id"))
            for k in ("updated_at", "version"):
                o.pop(k, None)
            cur = self.objects.get(oid)
            t = o.get("type") or (cur or {}).get("type")
            for k in TYPED_KEY.values():
                if k in o and k != TYPED_KEY.get(t):
                    self.cfail("object %s of type %s cannot carry %s" % (oid, t, k))
            if cur is not None:
                if "type" in o and o["type"] != cur["type"]:
                    self.cfail("object %s is a %s, not a %s" % (oid, cur["type"], o["type"]))
                new = deep_merge(copy.deepcopy(cur), o)
            else:
                t = o.get("type")
                if t not in CATALOG_TYPES:
                    self.cfail("new object %s needs a valid type" % oid)
                new = {"type": t, "id": oid, "is_deleted": False, "present_at_all_locations": True}
                new[TYPED_KEY[t]] = {}
                deep_merge(new, o)
            if new["type"] == "ITEM_VARIATION":
                iid = new.get("item_variation_data", {}).get("item_id")
                if not iid or (iid not in self.objects and iid not in idmap.values()):
                    self.cfail("variation %s needs item_variation_data.item_id of an existing item" % oid)
            new["updated_at"] = now
            new["version"] = version
            self.objects[oid] = new
            self.catalog_rev += 1
            out_objs.append(oid)

        for c in b.get("counts") or []:
            oid, lid = real_id(c.get("catalog_object_id")), c.get("location_id")
            if oid not in self.objects:
                self.cfail("count for unknown catalog object %r" % oid)
            if lid not in self.locations:
                self.cfail("count for unknown location %r" % lid)
            st = c.get("state", "IN_STOCK")
            if st not in INVENTORY_STATES:
                self.cfail("bad inventory state %r" % st)
            try:
                self.put_count(oid, lid, st, str(c.get("quantity", "0")), now)
            except decimal.InvalidOperation:
                self.cfail("bad quantity %r" % c.get("quantity"))
            self.counts[(oid, lid, st)]["catalog_object_type"] = self.objects[oid]["type"]
            out_counts.append(self.counts[(oid, lid, st)])

        for loc in b.get("locations") or []:
            lid = loc.get("id") or "L" + self.rid(12)
            cur = self.locations.get(lid)
            if cur is None:
                cur = {"id": lid, "name": "New Location", "status": "ACTIVE", "timezone": "America/Los_Angeles",
                       "created_at": now, "merchant_id": self.merchant_id, "country": "US",
                       "currency": self.args.currency, "capabilities": [], "type": "PHYSICAL"}
                self.locations[lid] = cur
            deep_merge(cur, {k: v for k, v in loc.items() if k != "id"})
            out_locs.append(cur)

        return json_response(200, {
            "objects": [self.render(self.objects[i]) for i in out_objs], "counts": out_counts,
            "locations": out_locs, "updated_at": now,
            "id_mappings": [{"client_object_id": k, "object_id": v} for k, v in idmap.items()]})

    def ctl_delete(self, req):
        b = self.ctl_body(req)
        ids = b.get("object_ids") or ([b["object_id"]] if b.get("object_id") else [])
        if not ids:
            self.cfail("object_ids required")
        now = self.now_iso()
        version = self.next_version()
        deleted = []
        for i in ids:
            o = self.objects.get(i)
            if o is None:
                raise HTTPError(json_response(404, {"error": "no catalog object %s" % i}))
            targets = [o]
            if o["type"] == "ITEM":
                targets += [v for v in self.variations_of().get(i, ()) if not v["is_deleted"]]
            for t in targets:
                t["is_deleted"] = True
                self.catalog_rev += 1
                t["updated_at"] = now
                t["version"] = version
                deleted.append(t["id"])
        return json_response(200, {"deleted_object_ids": deleted, "deleted_at": now})

    def ctl_deactivate_location(self, req):
        b = self.ctl_body(req)
        ids = b.get("location_ids") or ([b["location_id"]] if b.get("location_id") else [])
        status = b.get("status", "INACTIVE")
        if status not in ("ACTIVE", "INACTIVE"):
            self.cfail("status must be ACTIVE or INACTIVE")
        if not ids:
            self.cfail("location_id required")
        out = []
        for i in ids:
            if i not in self.locations:
                raise HTTPError(json_response(404, {"error": "no location %s" % i}))
            self.locations[i]["status"] = status
            out.append(self.locations[i])
        return json_response(200, {"locations": out})

    def ctl_order(self, req):
        b = self.ctl_body(req)
        orders = b.get("orders") or ([b["order"]] if b.get("order") else [])
        if not orders:
            self.cfail("order or orders required")
        now = self.now_iso()
        out = []
        for spec in orders:
            spec = copy.deepcopy(spec)
            oid = spec.get("id")
            cur = self.orders.get(oid) if oid else None
            if cur is not None:
                o = copy.deepcopy(cur)
                for k in ("version", "updated_at", "id"):
                    spec.pop(k, None)
                lines = spec.pop("line_items", None)
                deep_merge(o, spec)
                if lines is not None:
                    o["line_items"] = lines
                o["version"] = int(cur.get("version", 1)) + 1
            else:
                lid = spec.get("location_id")
                if lid not in self.locations:
                    self.cfail("a new order needs the location_id of a known location")
                o = spec
                o["id"] = oid or self.rid(27, BASE62)
                o.setdefault("state", "OPEN")
                o.setdefault("created_at", now)
                o.setdefault("source", {"name": "Point of Sale"})
                o.setdefault("line_items", [])
                o["version"] = 1
            if o["state"] not in ORDER_STATES:
                self.cfail("bad order state %r" % o["state"])
            o["updated_at"] = now
            if o["state"] in ("COMPLETED", "CANCELED"):
                o.setdefault("closed_at", now)
            else:
                o.pop("closed_at", None)
            self.fill_order(o)
            if o["state"] == "COMPLETED" and not o.get("tenders"):
                o["tenders"] = [self.make_tender(o, "CASH")]
            self.orders[o["id"]] = o
            out.append(o)
        return json_response(200, {"orders": out})

    def ctl_config(self, req):
        b = self.ctl_body(req)
        for k, v in b.items():
            if k not in self.config:
                self.cfail("unknown config key %r" % k)
            self.config[k] = bool(v)
        return json_response(200, {"config": self.config})

    def ctl_tokens(self, req):
        b = self.ctl_body(req)
        toks = b.get("tokens")
        if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks):
            self.cfail("tokens: a list of strings")
        self.tokens = set(toks)
        return json_response(200, {"tokens": sorted(self.tokens)})


def iso_s_ms(ts):
    return iso_ms(int(ts))


if __name__ == "__main__":
    sys.exit(main(SquareMock))
