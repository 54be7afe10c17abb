"""Import every recipient id of the recipient file into the ledger.

Safe to run again: ids already in the ledger keep their state. Run from ``examples/``::

    python -m newsletter.populate
"""

from __future__ import annotations

import csv

from newsletter.app import campaign
from newsletter.notifier import recipients_file


def main() -> None:
    path = recipients_file()
    with path.open(encoding="utf-8", newline="") as file:
        result = campaign.populate(row["id"] for row in csv.DictReader(file))
    print(f"{path}: {result.added} recipients added, {result.existing} already present")


if __name__ == "__main__":
    main()
