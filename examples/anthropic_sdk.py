"""Talk to abridge with the official Anthropic Python SDK (pip install anthropic).

    ABRIDGE_KEY=sk-ab-... python3 examples/anthropic_sdk.py
"""
import os

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ.get("ABRIDGE_URL", "http://127.0.0.1:8080"),
    api_key=os.environ["ABRIDGE_KEY"],
)

message = client.messages.create(
    model="claude-sonnet-4-5",  # routed to the providers' "middle" tier
    max_tokens=256,
    messages=[{"role": "user", "content": "Say hello in one short sentence."}],
)
print(message.content[0].text)

with client.messages.stream(
    model="claude-3-5-haiku-latest",  # the "small" tier
    max_tokens=256,
    messages=[{"role": "user", "content": "Count to five."}],
) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
print()

print(client.messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": "How many tokens?"}]))
