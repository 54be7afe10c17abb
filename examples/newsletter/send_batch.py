"""Send the next N recipients at the campaign's pace: ``python -m newsletter.send_batch 100``.

Operators start small and check deliverability before each bigger batch: 100, then
1,000, then 10,000. The batch waits behind any batch still in progress, so two runs never
double the rate. At the default pace of 100 mails every 30 seconds, a batch of 1,000
takes about five minutes.
"""

from __future__ import annotations

import argparse

from newsletter.app import campaign


def main() -> None:
    parser = argparse.ArgumentParser(description="Send the next N pending recipients.")
    parser.add_argument("size", type=int, help="how many pending recipients to send to")
    size = parser.parse_args().size
    if size < 1:
        parser.error(f"size must be a positive integer, got {size}")

    result = campaign.send_batch(
        size, on_slice=lambda done, total: print(f"handed over {done} of {total}")
    )
    print(f"handed over {result.dispatched} recipients in {result.slices} slice(s)")
    print(f"counts now: {campaign.counts().as_dict()}")


if __name__ == "__main__":
    main()
