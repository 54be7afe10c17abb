"""Show how many recipients are in each state: ``python -m newsletter.remaining``."""

from __future__ import annotations

from newsletter.app import campaign


def main() -> None:
    status = campaign.status()
    print(f"campaign {status.campaign} is {status.state.value}")
    for state, count in status.counts.as_dict().items():
        print(f"  {state:<10} {count:>9,}")
    print(f"  {'total':<10} {status.counts.total:>9,}")


if __name__ == "__main__":
    main()
