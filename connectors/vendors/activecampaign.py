"""ActiveCampaign (mailing tool): the built-in spec `connectors/specs/activecampaign.yaml`.

Access, portability, erasure (own deals, notes, then the contact), objection and consent
withdrawal (unsubscribe from every list) and retention sweeps of contacts are all declared
there, with the vendor facts behind each choice; this module only names the class the
register's `activecampaign` entry point loads.
"""

from __future__ import annotations

from connectors.vendors.spec import SpecConnector


class ActiveCampaignConnector(SpecConnector, spec="activecampaign"):
    """ActiveCampaign contacts with their lists, deals, notes, logs and activities."""


#: The register settings: api_url, api_key, page_size, rate_limit, retry, timeout_seconds.
ActiveCampaignSettings = ActiveCampaignConnector.settings_model
_SPEC = ActiveCampaignConnector.default_spec
#: Related listings under /contacts/{id}/, each a collection of the same name.
RELATED = tuple(r.collection for r in _SPEC.related if r.path.startswith("/contacts/{id}/"))
#: A contact's date fields and the `GET /contacts` filter that lists those before a day.
SWEEP_FILTERS = {field: next(iter(p)) for field, p in _SPEC.sweeps[0].date_fields.items()}

__all__ = ["RELATED", "SWEEP_FILTERS", "ActiveCampaignConnector", "ActiveCampaignSettings"]
