"""Prepare FineWeb-Edu: the checkout's shortcut for `python -m nanogpt.data.prepare fineweb_edu`
(the command lives in the package, so an installed one has it too: `nanogpt-prepare fineweb_edu`)."""

from nanogpt.data.prepare.commands import checkout_shortcut

main = checkout_shortcut("fineweb_edu")

if __name__ == "__main__":
    main()
