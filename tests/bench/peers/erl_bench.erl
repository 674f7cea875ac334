%% erl_bench: bench-actors' workloads on Erlang/OTP (Debian erlang-base):
%% flood (one sender process, one receiver, N small messages) and ping-pong
%% (P pairs, M round trips each). Prints one JSON line.
%% Usage: erl -noshell -pa DIR -run erl_bench main N P M
-module(erl_bench).
-export([main/1]).

main([N0, P0, M0]) ->
    N = list_to_integer(N0), P = list_to_integer(P0), M = list_to_integer(M0),
    Flood = flood(N),
    Rt = pingpong(P, M),
    io:format("{\"flood_msgs_per_s\":~B,\"roundtrips_per_s\":~B}~n", [round(Flood), round(Rt)]),
    halt(0).

seconds(T0) ->
    (erlang:monotonic_time(nanosecond) - T0) / 1.0e9.

flood(N) ->
    Self = self(),
    R = spawn(fun() -> recv(N, Self) end),
    T0 = erlang:monotonic_time(nanosecond),
    spawn(fun() -> send(R, N) end),
    receive done -> ok end,
    N / seconds(T0).

send(_, 0) -> ok;
send(R, K) -> R ! K, send(R, K - 1).

recv(0, Parent) -> Parent ! done;
recv(K, Parent) -> receive _ -> recv(K - 1, Parent) end.

pingpong(P, M) ->
    Self = self(),
    Clients = [begin
                   S = spawn(fun server/0),
                   spawn(fun() -> receive go -> client(S, M, Self) end end)
               end || _ <- lists:seq(1, P)],
    T0 = erlang:monotonic_time(nanosecond),
    [C ! go || C <- Clients],
    [receive done -> ok end || _ <- Clients],
    P * M / seconds(T0).

server() ->
    receive
        {ping, From, V} -> From ! {pong, V}, server();
        stop -> ok
    end.

client(S, 0, Parent) -> S ! stop, Parent ! done;
client(S, K, Parent) ->
    S ! {ping, self(), K},
    receive {pong, _} -> client(S, K - 1, Parent) end.
