#!/usr/bin/env python3
"""Mock of the shop's remote store API (the `pythonanywhere` sink).

Implements /work/shared/specs/pythonanywhere.md: SimpleJWT-style token login
and refresh, and the two sync endpoints with their matching, dedup, per-item
results, whole-batch 400 and 413 rules. See tests/mock/README.md.

    python3 tests/mock/pythonanywhere.py --port 0 [--username shop --password secret]
"""
import decimal
import hashlib
import hmac
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mockbase import (Mock, HTTPError, Response, json_response, iso_s, parse_time_us,  # noqa: E402
                      b64url, b64url_decode, main)

PRODUCT_FIELDS = ["barcode_number", "brand", "size", "color", "location", "name", "category",
                  "cost_price", "selling_price", "quantity", "updated_at"]
RECEIPT_FIELDS = ["local_receipt_id", "receipt_number", "customer_name", "total_amount",
                  "discount_amount", "discount_percentage", "delivery_cost", "created_at"]
SALE_FIELDS = ["local_sale_id", "product_barcode", "quantity", "unit_price", "total_price"]
PAYMENT_FIELDS = ["local_payment_id", "amount", "method", "payment_date"]

TOKEN_INVALID = {"detail": "Given token not valid for any token type", "code": "token_not_valid"}


class ItemError(Exception):
    """A single item the server refuses (the rest of the batch goes on)."""


def _blank(v):
    return v is None or (isinstance(v, str) and not v.strip())


def _money(v, field, minimum=decimal.Decimal(0)):
    """Decimal field with 2 places, as DRF renders it ("12.50")."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise ItemError("%s: A valid number is required." % field)
    try:
        d = decimal.Decimal(str(v).strip())
    except (decimal.InvalidOperation, ValueError):
        raise ItemError("%s: A valid number is required." % field)
    if not d.is_finite():
        raise ItemError("%s: A valid number is required." % field)
    if minimum is not None and d < minimum:
        raise ItemError("%s: Ensure this value is greater than or equal to %s." % (field, minimum))
    return str(d.quantize(decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP))


def _integer(v, field):
    if v is None:
        return None
    if isinstance(v, bool):
        raise ItemError("%s: A valid integer is required." % field)
    if isinstance(v, int):
        return v
    try:
        d = decimal.Decimal(str(v).strip())
    except (decimal.InvalidOperation, ValueError):
        raise ItemError("%s: A valid integer is required." % field)
    if not d.is_finite() or d != d.to_integral_value():
        raise ItemError("%s: A valid integer is required." % field)
    return int(d)


def _number(v, field):
    """A quantity that may be fractional; stored as a decimal string."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise ItemError("%s: A valid number is required." % field)
    try:
        d = decimal.Decimal(str(v).strip())
    except (decimal.InvalidOperation, ValueError):
        raise ItemError("%s: A valid number is required." % field)
    if not d.is_finite():
        raise ItemError("%s: A valid number is required." % field)
    return format(d.normalize(), "f") if d != 0 else "0"


def _datetime(v, field):
    if _blank(v):
        return None
    if not isinstance(v, str):
        raise ItemError("%s: Datetime has wrong format." % field)
    s = v.strip()
    if len(s) == 10:
        s += "T00:00:00"
    try:
        parse_time_us(s, require_offset=False)
    except ValueError:
        raise ItemError("%s: Datetime has wrong format. Use one of these formats instead: "
                        "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]." % field)
    return v


def _text(v):
    if v is None:
        return None
    return v if isinstance(v, str) else str(v)


class PythonAnywhereMock(Mock):
    name = "pa"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--username", default="shop")
        p.add_argument("--password", default="secret")
        p.add_argument("--access-ttl", type=float, default=300, help="access token lifetime, seconds")
        p.add_argument("--refresh-ttl", type=float, default=86400, help="refresh token lifetime, seconds")
        p.add_argument("--max-batch", type=int, default=100, help="items per request before 413")
        p.add_argument("--secret", default="pa-mock-signing-key", help="JWT signing key")

    def setup_routes(self):
        r = self.route
        r("POST", r"/api/oem/token/", self.token, auth=False)
        r("POST", r"/api/oem/token/refresh/", self.refresh, auth=False)
        r("POST", r"/api/oem/sync/products/", self.sync_products)
        r("POST", r"/api/oem/sync/receipts/", self.sync_receipts)
        self.control("POST", "expire", self.ctl_expire)
        self.control("POST", "config", self.ctl_config)

    def load(self):
        self.products = []           # dicts with "id"
        self.receipts = []           # dicts with "id", "sales", "payments"
        self.receipt_by_local = {}
        self.sale_by_local = {}
        self.payment_by_local = {}
        self.next_id = {"product": 1, "receipt": 1, "sale": 1, "payment": 1}
        self.revoked = set()         # jti of expired/revoked tokens
        self.issued = {"access": set(), "refresh": set()}
        self.jti_seq = 0
        self.max_batch = self.args.max_batch
        self.stats = {"logins": 0, "refreshes": 0, "batches": 0}

    def state(self):
        return {"products": self.products, "receipts": self.receipts,
                "sales": [s for r in self.receipts for s in r["sales"]],
                "payments": [p for r in self.receipts for p in r["payments"]],
                "tokens": {"issued_access": len(self.issued["access"]),
                           "issued_refresh": len(self.issued["refresh"]),
                           "revoked": len(self.revoked)},
                "stats": dict(self.stats), "max_batch": self.max_batch}

    # ------------------------------------------------------------------ errors
    def error_response(self, status, detail, code=None):
        if status == 404:
            return Response(404, "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n"
                            "</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found "
                            "on this server.</p>\n</body>\n</html>\n", "text/html; charset=utf-8")
        if status == 405:
            return json_response(405, {"detail": detail})
        if status >= 500:
            return Response(status, "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Server Error (%d)"
                            "</title>\n</head>\n<body>\n  <h1>Server Error (%d)</h1><p></p>\n</body>\n</html>\n"
                            % (status, status), "text/html; charset=utf-8")
        return json_response(status, {"detail": detail})

    def fault_response(self, status, fault):
        if status == 401:
            return json_response(401, dict(TOKEN_INVALID), {"WWW-Authenticate": 'Bearer realm="api"'})
        if status == 429:
            wait = fault.retry_after if fault.retry_after and fault.retry_after.isdigit() else "1"
            return json_response(429, {"detail": "Request was throttled. Expected available in %s seconds." % wait})
        if status == 413:
            return json_response(413, {"detail": "Request entity too large."})
        if status in (502, 503, 504):
            return Response(status, "<html><head><title>%d</title></head><body><h1>Something went wrong :-(</h1>"
                            "<p>This website is temporarily unavailable.</p></body></html>\n" % status,
                            "text/html; charset=utf-8")
        if status >= 500:
            return self.error_response(status, "")
        return json_response(status, {"detail": "Injected error %d." % status})

    def not_found(self, req):
        return self.error_response(404, "Not found.")

    def bad_json(self, req, err):
        return json_response(400, {"detail": "JSON parse error - %s" % err, "errors": {}})

    # ------------------------------------------------------------------ JWT
    def sign(self, data):
        return b64url(hmac.new(self.args.secret.encode(), data.encode(), hashlib.sha256).digest())

    def make_token(self, kind, ttl):
        now = int(self.now())
        self.jti_seq += 1
        jti = hashlib.sha256(b"%s-%d-%f" % (kind.encode(), self.jti_seq, self.now())).hexdigest()[:32]
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")))
        payload = b64url(json.dumps({"token_type": kind, "exp": int(now + ttl), "iat": now, "jti": jti,
                                     "user_id": 1}, separators=(",", ":")))
        self.issued[kind].add(jti)
        return "%s.%s.%s" % (header, payload, self.sign(header + "." + payload))

    def read_token(self, tok, kind):
        """The payload when `tok` is a valid, unexpired token of `kind`, else None."""
        if not isinstance(tok, str):
            return None
        parts = tok.split(".")
        if len(parts) != 3:
            return None
        if not hmac.compare_digest(parts[2], self.sign(parts[0] + "." + parts[1])):
            return None
        try:
            payload = json.loads(b64url_decode(parts[1]))
        except (ValueError, UnicodeDecodeError):
            return None
        if payload.get("token_type") != kind or payload.get("jti") in self.revoked:
            return None
        if payload.get("jti") not in self.issued[kind]:
            return None          # issued before a reset
        if not isinstance(payload.get("exp"), int) or payload["exp"] <= self.now():
            return None
        return payload

    def check_auth(self, req):
        h = req.header("authorization")
        if h is None or not h.split() or h.split()[0].lower() != "bearer":
            return json_response(401, {"detail": "Authentication credentials were not provided."},
                                 {"WWW-Authenticate": 'Bearer realm="api"'})
        parts = h.split()
        if len(parts) != 2:
            return json_response(401, {"detail": "Authorization header must contain two space-delimited values",
                                       "code": "bad_authorization_header"},
                                 {"WWW-Authenticate": 'Bearer realm="api"'})
        with self.lock:
            ok = self.read_token(parts[1], "access")
        if ok is None:
            return json_response(401, dict(TOKEN_INVALID), {"WWW-Authenticate": 'Bearer realm="api"'})
        return None

    # ------------------------------------------------------------------ auth endpoints
    def json_object(self, req):
        b = req.json()
        if not isinstance(b, dict):
            raise HTTPError(json_response(400, {"detail": "Invalid data. Expected a dictionary.",
                                                "errors": {"non_field_errors": ["Invalid data. Expected a dictionary."]}}))
        return b

    def token(self, req):
        b = self.json_object(req)
        errors = {k: ["This field is required."] for k in ("username", "password") if _blank(b.get(k))}
        if errors:
            return json_response(400, errors)
        if b["username"] != self.args.username or b["password"] != self.args.password:
            return json_response(401, {"detail": "No active account found with the given credentials"})
        self.stats["logins"] += 1
        return json_response(200, {"refresh": self.make_token("refresh", self.args.refresh_ttl),
                                   "access": self.make_token("access", self.args.access_ttl)})

    def refresh(self, req):
        b = self.json_object(req)
        if _blank(b.get("refresh")):
            return json_response(400, {"refresh": ["This field is required."]})
        if self.read_token(b["refresh"], "refresh") is None:
            return json_response(401, {"detail": "Token is invalid or expired", "code": "token_not_valid"})
        self.stats["refreshes"] += 1
        return json_response(200, {"access": self.make_token("access", self.args.access_ttl)})

    # ------------------------------------------------------------------ batches
    def batch(self, req, key):
        """Parse and check a batch: 400 for malformed JSON or shape, 413 when too large."""
        b = self.json_object(req)
        items = b.get(key)
        if items is None:
            raise HTTPError(json_response(400, {"detail": "Invalid batch: `%s` is required." % key,
                                                "errors": {key: ["This field is required."]}}))
        if not isinstance(items, list):
            raise HTTPError(json_response(400, {"detail": "Invalid batch: `%s` must be a list." % key,
                                                "errors": {key: ["Expected a list of items but got type \"%s\"."
                                                                 % type(items).__name__]}}))
        if len(items) > self.max_batch:
            raise HTTPError(json_response(413, {"detail": "Batch too large: %d items (max %d)."
                                                % (len(items), self.max_batch)}))
        self.stats["batches"] += 1
        return items

    @staticmethod
    def refuse(key, errors):
        n = len(errors)
        raise HTTPError(json_response(400, {
            "detail": "Invalid batch: %d item%s failed validation; nothing was stored." % (n, "" if n == 1 else "s"),
            "errors": {key: errors}}))

    @staticmethod
    def required(obj, field):
        v = obj.get(field) if isinstance(obj, dict) else None
        if field not in obj:
            return ["This field is required."]
        if v is None:
            return ["This field may not be null."]
        if isinstance(v, str) and not v.strip():
            return ["This field may not be blank."]
        return None

    @staticmethod
    def summary(results):
        out = {"created": 0, "updated": 0, "skipped": 0, "errors": 0}
        for r in results:
            out["errors" if r["status"] == "error" else r["status"]] += 1
        out["results"] = results
        return out

    # ------------------------------------------------------------------ products
    def sync_products(self, req):
        items = self.batch(req, "products")
        errors = {}
        for i, p in enumerate(items):
            if not isinstance(p, dict):
                errors[str(i)] = {"non_field_errors": ["Invalid data. Expected a dictionary, but got %s."
                                                       % type(p).__name__]}
                continue
            e = self.required(p, "name")
            if e:
                errors[str(i)] = {"name": e}
        if errors:
            self.refuse("products", errors)
        results = []
        for i, p in enumerate(items):
            try:
                clean = self.clean_product(p)
            except ItemError as e:
                results.append({"index": i, "status": "error", "id": None, "error": str(e)})
                continue
            results.append(dict({"index": i, "error": None}, **self.store_product(p, clean)))
        return json_response(200, self.summary(results))

    def clean_product(self, p):
        c = {}
        for f in ("brand", "size", "color", "location", "name", "category"):
            if f in p:
                c[f] = _text(p[f])
        if "barcode_number" in p:
            bc = p["barcode_number"]
            c["barcode_number"] = None if _blank(bc) else _text(bc).strip()
        if "cost_price" in p:
            c["cost_price"] = _money(p["cost_price"], "cost_price")
        if "selling_price" in p:
            c["selling_price"] = _money(p["selling_price"], "selling_price")
        if "quantity" in p:
            c["quantity"] = _integer(p["quantity"], "quantity")
        if "updated_at" in p:
            c["updated_at"] = _datetime(p["updated_at"], "updated_at")
        return c

    @staticmethod
    def tuple_key(p):
        return tuple((p.get(f) or "") for f in ("brand", "size", "color", "location"))

    def store_product(self, raw, clean):
        found = None
        bc = clean.get("barcode_number")
        if bc:
            found = next((x for x in self.products if x.get("barcode_number") == bc), None)
        else:
            key = self.tuple_key(clean)
            found = next((x for x in self.products if self.tuple_key(x) == key), None)
        if found is None:
            rec = {"id": self.next_id["product"]}
            self.next_id["product"] += 1
            for f in PRODUCT_FIELDS:
                rec[f] = clean.get(f)
            if rec["quantity"] is None:
                rec["quantity"] = 0
            rec["created_on"] = rec["modified_on"] = iso_s(self.now())
            self.products.append(rec)
            return {"status": "created", "id": rec["id"]}
        changed = {f: v for f, v in clean.items() if found.get(f) != v and not (f == "barcode_number" and not v)}
        if not changed:
            return {"status": "skipped", "id": found["id"]}
        found.update(changed)
        found["modified_on"] = iso_s(self.now())
        return {"status": "updated", "id": found["id"]}

    # ------------------------------------------------------------------ receipts
    def sync_receipts(self, req):
        items = self.batch(req, "receipts")
        errors = {}
        for i, r in enumerate(items):
            if not isinstance(r, dict):
                errors[str(i)] = {"non_field_errors": ["Invalid data. Expected a dictionary, but got %s."
                                                       % type(r).__name__]}
                continue
            err = {}
            e = self.required(r, "local_receipt_id")
            if e:
                err["local_receipt_id"] = e
            for lst, idf in (("sales", "local_sale_id"), ("payments", "local_payment_id")):
                sub = r.get(lst)
                if sub is None:
                    continue
                if not isinstance(sub, list):
                    err[lst] = ["Expected a list of items but got type \"%s\"." % type(sub).__name__]
                    continue
                suberr = {}
                for j, s in enumerate(sub):
                    if not isinstance(s, dict):
                        suberr[str(j)] = {"non_field_errors": ["Invalid data. Expected a dictionary."]}
                        continue
                    e = self.required(s, idf)
                    if e:
                        suberr[str(j)] = {idf: e}
                if suberr:
                    err[lst] = suberr
            if err:
                errors[str(i)] = err
        if errors:
            self.refuse("receipts", errors)
        results = []
        for i, r in enumerate(items):
            try:
                clean = self.clean_receipt(r)
            except ItemError as e:
                results.append({"index": i, "status": "error", "id": None, "error": str(e)})
                continue
            results.append(dict({"index": i, "error": None}, **self.store_receipt(clean)))
        return json_response(200, self.summary(results))

    def clean_receipt(self, r):
        c = {"local_receipt_id": _text(r["local_receipt_id"]).strip()}
        for f in ("receipt_number", "customer_name"):
            c[f] = _text(r.get(f))
        for f in ("total_amount", "discount_amount", "delivery_cost"):
            c[f] = _money(r.get(f), f)
        c["discount_percentage"] = _money(r.get("discount_percentage"), "discount_percentage")
        if c["discount_percentage"] is not None and decimal.Decimal(c["discount_percentage"]) > 100:
            raise ItemError("discount_percentage: Ensure this value is less than or equal to 100.")
        c["created_at"] = _datetime(r.get("created_at"), "created_at")
        c["sales"] = []
        for j, s in enumerate(r.get("sales") or []):
            try:
                c["sales"].append({"local_sale_id": _text(s["local_sale_id"]).strip(),
                                   "product_barcode": _text(s.get("product_barcode")),
                                   "quantity": _number(s.get("quantity"), "quantity"),
                                   "unit_price": _money(s.get("unit_price"), "unit_price", None),
                                   "total_price": _money(s.get("total_price"), "total_price", None)})
            except ItemError as e:
                raise ItemError("sales[%d].%s" % (j, e))
        c["payments"] = []
        for j, p in enumerate(r.get("payments") or []):
            try:
                c["payments"].append({"local_payment_id": _text(p["local_payment_id"]).strip(),
                                      "amount": _money(p.get("amount"), "amount", None),
                                      "method": _text(p.get("method")),
                                      "payment_date": _datetime(p.get("payment_date"), "payment_date")})
            except ItemError as e:
                raise ItemError("payments[%d].%s" % (j, e))
        return c

    def store_receipt(self, c):
        now = iso_s(self.now())
        rec = self.receipt_by_local.get(c["local_receipt_id"])
        status = "skipped"
        if rec is None:
            rec = {"id": self.next_id["receipt"]}
            self.next_id["receipt"] += 1
            for f in RECEIPT_FIELDS:
                rec[f] = c.get(f)
            rec["created_on"] = now
            rec["sales"] = []
            rec["payments"] = []
            self.receipts.append(rec)
            self.receipt_by_local[rec["local_receipt_id"]] = rec
            status = "created"
        detail = {"sales": {"created": 0, "skipped": 0}, "payments": {"created": 0, "skipped": 0}}
        for lst, kind, idf, index in (("sales", "sale", "local_sale_id", self.sale_by_local),
                                      ("payments", "payment", "local_payment_id", self.payment_by_local)):
            for s in c[lst]:
                if s[idf] in index:
                    detail[lst]["skipped"] += 1
                    continue
                row = dict({"id": self.next_id[kind], "receipt_id": rec["id"],
                            "local_receipt_id": rec["local_receipt_id"]}, **s)
                row["created_on"] = now
                self.next_id[kind] += 1
                rec[lst].append(row)
                index[s[idf]] = row
                detail[lst]["created"] += 1
        if status == "skipped" and (detail["sales"]["created"] or detail["payments"]["created"]):
            status = "updated"
        return dict({"status": status, "id": rec["id"]}, **detail)

    # ------------------------------------------------------------------ control
    def ctl_expire(self, req):
        b = req.json() or {}
        kinds = ["access"] + (["refresh"] if isinstance(b, dict) and b.get("refresh") else [])
        n = 0
        for k in kinds:
            n += len(self.issued[k] - self.revoked)
            self.revoked |= self.issued[k]
        return json_response(200, {"expired": n, "kinds": kinds})

    def ctl_config(self, req):
        b = req.json() or {}
        if "max_batch" in b:
            self.max_batch = int(b["max_batch"])
        return json_response(200, {"max_batch": self.max_batch})


if __name__ == "__main__":
    sys.exit(main(PythonAnywhereMock))
