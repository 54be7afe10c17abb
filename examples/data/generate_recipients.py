"""Generate recipients.csv: 10,000 made-up recipients of the example newsletter.

Every address is at example.com, example.org or example.net, the domains that RFC 2606
reserves for documentation, so the file can never mail a real person. The output is the
same on every run and every platform because the random generator is seeded and only the
standard library is used. Run it from anywhere::

    python examples/data/generate_recipients.py
"""

from __future__ import annotations

import argparse
import csv
import random
import unicodedata
from pathlib import Path

SEED = 20_240_611
RECIPIENT_COUNT = 10_000
DOMAINS = ("example.com", "example.org", "example.net")

# A few names carry accents so that the example also renders non-ASCII display names.
FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Anders", "Aoife", "Arjun", "Beatriz", "Bruno", "Camille",
    "Chen", "Chidi", "Clara", "Dario", "Dmitri", "Elif", "Emil", "Esther", "Farah", "Felix",
    "Freya", "Gustavo", "Hana", "Hugo", "Ines", "Ivan", "Jana", "Jonas", "José", "Kai",
    "Kenji", "Lara", "Leila", "Linnea", "Lucas", "Maja", "Malik", "Marta", "Mateo", "Mei",
    "Mira", "Nadia", "Niamh", "Nils", "Noor", "Olga", "Omar", "Pablo", "Priya", "Quentin",
    "Rafael", "Rosa", "Sami", "Sana", "Sofia", "Soren", "Tariq", "Thea", "Tomás", "Uma",
    "Valentina", "Viktor", "Wen", "Yara", "Yusuf", "Zoë",
)
LAST_NAMES = (
    "Abebe", "Almeida", "Andersson", "Becker", "Bianchi", "Brennan", "Castillo", "Costa",
    "Dubois", "Eriksen", "Fernández", "Fischer", "García", "Haddad", "Hansen", "Ibrahim",
    "Ito", "Jansen", "Kaplan", "Kowalski", "Kumar", "Larsen", "Lefèvre", "Lindqvist",
    "Mendes", "Moreau", "Müller", "Nakamura", "Novak", "Okafor", "Olsen", "Park", "Petrov",
    "Quinn", "Rossi", "Santos", "Schmidt", "Silva", "Tanaka", "Torres", "Varga", "Vogel",
    "Wagner", "Walsh", "Weber", "Yilmaz", "Zhang", "Zielinski",
)


def ascii_local_part(text: str) -> str:
    """Return ``text`` lowercased with its accents dropped, for the local part of an address."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


def generate(count: int = RECIPIENT_COUNT, seed: int = SEED) -> list[tuple[int, str, str]]:
    """Return ``count`` rows of (id, e-mail address, name), ids numbered from 1.

    The id is part of the address, so every address is unique.
    """
    generator = random.Random(seed)
    rows = []
    for recipient_id in range(1, count + 1):
        first = generator.choice(FIRST_NAMES)
        last = generator.choice(LAST_NAMES)
        domain = generator.choice(DOMAINS)
        local_part = f"{ascii_local_part(first)}.{ascii_local_part(last)}{recipient_id}"
        rows.append((recipient_id, f"{local_part}@{domain}", f"{first} {last}"))
    return rows


def write_csv(path: Path, rows: list[tuple[int, str, str]]) -> None:
    """Write ``rows`` under an ``id,email,name`` header, UTF-8 with ``\\n`` line ends."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(("id", "email", "name"))
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).with_name("recipients.csv"),
        help="CSV file to write (default: recipients.csv next to this script)",
    )
    parser.add_argument(
        "--count", type=int, default=RECIPIENT_COUNT, help="number of recipients to write"
    )
    arguments = parser.parse_args()
    if arguments.count < 1:
        parser.error(f"--count must be a positive integer, got {arguments.count}")

    write_csv(arguments.output, generate(arguments.count))
    print(f"wrote {arguments.count} recipients to {arguments.output}")


if __name__ == "__main__":
    main()
