"""Prepare the chat task mixture: the checkout's shortcut for `python -m nanogpt.data.prepare task_mixture`
(the command lives in the package, so an installed one has it too: `nanogpt-prepare task_mixture`)."""

from nanogpt.data.prepare.commands import checkout_shortcut

main = checkout_shortcut("task_mixture")

if __name__ == "__main__":
    main()
