// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// The consortium's pedometer: per-organization counters of every CTI step, and one
/// `Step` event per count, indexed by org, token and task. Only the three CTI contracts
/// (fixed at deployment) may record.
contract Activity {
    enum Kind {
        Published, // a listing created
        Minted, // tokens minted for a listing (its initial supply and any later mint)
        Sold, // tokens sold by the publisher org
        Bought, // tokens bought by the consumer org
        Requested, // a task opened (one token put in escrow)
        Accepted, // a task accepted by a solver
        Solved, // a task finished by the publisher org's solver
        Consumed, // a token used up by the consumer org (task finished)
        Cancelled, // a pending task cancelled by its consumer
        Expired, // an accepted task reclaimed after its deadline
        Rejected, // a task rejected or abandoned by the solver
        FeedbackGiven, // a rating given by the consumer org
        FeedbackReceived, // a rating received by the publisher org
        LikeGiven,
        LikeReceived,
        DisputeRaised, // a delivery disputed by the consumer org (what it received is not what was listed)
        DisputeReceived // a delivery of the publisher org disputed
    }

    uint256 public constant KINDS = 17;

    address public immutable market;
    address public immutable tasks;
    address public immutable feedback;

    mapping(uint32 => uint64[KINDS]) private _counts;

    event Step(
        uint32 indexed org, uint256 indexed tokenId, uint256 indexed taskId, Kind kind, address actor, uint64 amount
    );

    error NotRecorder(address caller);

    constructor(address market_, address tasks_, address feedback_) {
        market = market_;
        tasks = tasks_;
        feedback = feedback_;
    }

    /// All counters of one organization, indexed by Kind.
    function countsOf(uint32 org) external view returns (uint64[KINDS] memory) {
        return _counts[org];
    }

    function record(Kind kind, uint32 org, uint256 tokenId, uint256 taskId, address actor, uint64 amount) external {
        _onlyRecorder();
        _record(kind, org, tokenId, taskId, actor, amount);
    }

    /// Two counts of one step (e.g. Sold by the publisher org, Bought by the buyer org).
    function record2(
        Kind kindA,
        uint32 orgA,
        uint64 amountA,
        Kind kindB,
        uint32 orgB,
        uint64 amountB,
        uint256 tokenId,
        uint256 taskId,
        address actor
    ) external {
        _onlyRecorder();
        _record(kindA, orgA, tokenId, taskId, actor, amountA);
        _record(kindB, orgB, tokenId, taskId, actor, amountB);
    }

    /// Three counts of one, each by one (e.g. Accepted and Solved by the publisher org, Consumed by
    /// the consumer org, for a task delivered in one call).
    function record3(
        Kind kindA,
        uint32 orgA,
        Kind kindB,
        uint32 orgB,
        Kind kindC,
        uint32 orgC,
        uint256 tokenId,
        uint256 taskId,
        address actor
    ) external {
        _onlyRecorder();
        _record(kindA, orgA, tokenId, taskId, actor, 1);
        _record(kindB, orgB, tokenId, taskId, actor, 1);
        _record(kindC, orgC, tokenId, taskId, actor, 1);
    }

    function _onlyRecorder() private view {
        if (msg.sender != market && msg.sender != tasks && msg.sender != feedback) revert NotRecorder(msg.sender);
    }

    function _record(Kind kind, uint32 org, uint256 tokenId, uint256 taskId, address actor, uint64 amount) private {
        // Saturating: a counter that reached 2^64-1 stays there (the Step event still carries the
        // amount) instead of reverting, which would block the step it counts (e.g. publishing).
        uint64 current = _counts[org][uint256(kind)];
        _counts[org][uint256(kind)] = amount > type(uint64).max - current ? type(uint64).max : current + amount;
        emit Step(org, tokenId, taskId, kind, actor, amount);
    }
}
