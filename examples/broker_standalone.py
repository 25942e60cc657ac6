"""The MessageBroker on its own: the classic exercise, plus what a real one needs.

Run:  python examples/broker_standalone.py
"""

from __future__ import annotations

from rawws import MessageBroker


def main() -> None:
    broker = MessageBroker()
    inbox: list[str] = []

    def reader(message: str) -> None:
        inbox.append(message)
        print("reader got:", message)

    def shouter(message: str) -> None:
        print("shouter got:", message.upper())

    broker.subscribe("news", reader)
    broker.subscribe("news", shouter)
    print("notified:", broker.publish("news", "rawws 0.1 is out"))  # 2

    broker.unsubscribe("news", shouter)
    print("notified:", broker.publish("news", "only the reader hears this"))  # 1
    print("subscribe twice:", broker.subscribe("news", reader))  # False: no double delivery
    print("unknown unsubscribe:", broker.unsubscribe("news", print))  # False: no exception

    def broken(message: str) -> None:
        raise RuntimeError("a bug in one subscriber")

    broker.subscribe("news", broken)
    print("notified despite a broken subscriber:", broker.publish("news", "still delivered"))  # 1 (logged)

    broker.subscribe_pattern("weather.*", lambda channel, message: print(f"{channel}: {message}"))
    broker.publish("weather.paris", "sunny")
    broker.publish("weather.oslo", "snow")
    print("channels:", sorted(broker.channels()))


if __name__ == "__main__":
    main()
